"""NPE on cached frozen features: the same training as through the embedding, a posterior on
raw x that sbi's tools take unchanged."""

from __future__ import annotations

import copy

import pytest
import torch
from sbi.inference import NPE
from sbi.utils import BoxUniform

from sbi_symmetry._sbi_compat import NullTracker, training_summary
from sbi_symmetry.nets.conv import ConvEncoder1D
from sbi_symmetry.symmetry.cached import cached_npe, frozen_features
from sbi_symmetry.symmetry.embedding import SymmetryEmbedding

pytestmark = pytest.mark.filterwarnings("ignore:Maximum number of epochs:UserWarning")
PRIOR = BoxUniform(torch.zeros(2), torch.ones(2))


def _data(num=400, seed=0):
    gen = torch.Generator().manual_seed(seed)
    theta = PRIOR.sample((num,))
    t = torch.linspace(0, 1, 40)
    x = torch.sin(6 * theta[:, :1] * t + theta[:, 1:]) + 0.1 * torch.randn(num, 40, generator=gen)
    return theta, x


def _embedding(freeze):
    torch.manual_seed(1)
    return SymmetryEmbedding(ConvEncoder1D(40, 3, channels=2, num_blocks=1), freeze=freeze)


@pytest.mark.parametrize("freeze", ["all", "backbone"])
def test_cached_training_matches_training_through_the_embedding(freeze):
    theta, x = _data()
    emb = _embedding(freeze)
    settings = {"max_num_epochs": 3, "training_batch_size": 50}
    torch.manual_seed(7)
    through = copy.deepcopy(emb)  # sbi trains a trainable head in place
    direct = NPE(
        PRIOR,
        density_estimator=through.posterior_nn("maf"),
        tracker=NullTracker(),
        show_progress_bars=False,
    )
    direct.append_simulations(theta, x).train(**settings)
    torch.manual_seed(7)
    trainer, posterior = cached_npe(PRIOR, emb, theta, x, show_progress_bars=False, **settings)
    a = training_summary(direct)["validation_loss"]
    b = training_summary(trainer)["validation_loss"]
    torch.testing.assert_close(torch.tensor(b), torch.tensor(a), rtol=1e-3, atol=1e-3)
    direct_post = direct.build_posterior()
    unnormalised = {"x": x[:1], "norm_posterior": False}  # the leakage factor is sampled
    torch.testing.assert_close(
        posterior.log_prob(theta[:5], **unnormalised),
        direct_post.log_prob(theta[:5], **unnormalised),
        rtol=1e-3,
        atol=1e-3,
    )


def test_the_cached_posterior_takes_raw_x_and_batches():
    theta, x = _data()
    _, posterior = cached_npe(
        PRIOR, _embedding("all"), theta, x, max_num_epochs=1, show_progress_bars=False
    )
    samples = posterior.sample_batched((7,), x=x[:3], show_progress_bars=False)
    assert samples.shape == (7, 3, 2)
    assert posterior.log_prob(theta[:4], x=x[:1]).shape == (4,)
    posterior.set_default_x(x[:1])
    assert torch.isfinite(posterior.map(show_progress_bars=False, num_iter=5)).all()


def test_nothing_frozen_is_refused_by_name():
    with pytest.raises(ValueError, match="freeze='none'"):
        frozen_features(_embedding("none"))
    with pytest.raises(TypeError, match="`embedding`"):
        frozen_features(torch.nn.Linear(2, 2))
    encoder = torch.nn.Module()
    encoder.backbone, encoder.head = torch.nn.Linear(4, 2), torch.nn.Identity()
    with pytest.raises(ValueError, match="a head without parameters"):
        frozen_features(SymmetryEmbedding(encoder, freeze="backbone", output_dim=2))


def test_z_scoring_before_the_embedding_is_refused_as_through_it():
    theta, x = _data(num=50)
    with pytest.raises(ValueError, match="`z_score_x` must be 'none'"):
        cached_npe(PRIOR, _embedding("all"), theta, x, flow_kwargs={"z_score_x": "independent"})
