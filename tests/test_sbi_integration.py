"""The pretrained embedding inside sbi: NPE (nflows and zuko flows), FMPE and NRE_C.

Small sizes throughout: a tiny encoder, a few hundred simulations, one or two epochs. These
check that the documented user code runs as written and that freezing survives sbi's training
loop, not the quality of the posteriors (that is the benchmarks' job).
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from sbi.inference import FMPE, NPE, NRE_C
from sbi.neural_nets import classifier_nn, posterior_flow_nn, posterior_nn
from torch import nn

from sbi_symmetry._sbi_compat import NullTracker
from sbi_symmetry.nets.conv import ConvEncoder1D
from sbi_symmetry.symmetry.embedding import SymmetryEmbedding, symmetry_posterior_nn
from sbi_symmetry.symmetry.pretrain import pretrain_vicreg
from sbi_symmetry.tasks import DampedOscillator
from sbi_symmetry.views import ResimulatedViews

L = 200
NUM_TRAIN = 300
# One or two sbi epochs are all these tests need.
pytestmark = pytest.mark.filterwarnings("ignore:Maximum number of epochs:UserWarning")


@pytest.fixture(scope="module")
def pretrained() -> SymmetryEmbedding:
    """The issue's user code, on small sizes."""
    task = DampedOscillator()
    torch.manual_seed(0)
    # --- as a user writes it ------------------------------------------------------------
    views = ResimulatedViews(task.simulate, task.nuisance_prior)
    embedding = pretrain_vicreg(
        ConvEncoder1D(input_length=L, output_dim=3, channels=4, num_blocks=2, kernel_size=5),
        views,
        task.prior,
        num_simulations=300,
        batch_size=64,
        max_epochs=2,
        warmup_epochs=0,
        freeze="backbone",  # the paper's set-up; the default "none" is tested below
        show_progress_bar=False,
    )
    return embedding


@pytest.fixture
def embedding(pretrained) -> SymmetryEmbedding:
    return copy.deepcopy(pretrained)


@pytest.fixture
def data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    task = DampedOscillator()
    generator = torch.Generator().manual_seed(1)
    theta, x = task.sample_joint(NUM_TRAIN, generator=generator)
    x_o = task.simulate(torch.tensor([[1.2, 0.2]]), torch.tensor([[0.5]]), generator=generator)
    return theta, x, x_o


def params(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def check_samples(samples: torch.Tensor, num: int) -> None:
    prior = DampedOscillator().prior
    assert samples.shape == (num, 2)
    assert torch.isfinite(samples).all()
    assert torch.isfinite(prior.log_prob(samples)).all()  # inside the prior's support


@pytest.mark.parametrize("model", ["maf", "nsf", "zuko_maf"])
def test_npe_with_posterior_nn_as_documented(embedding, data, model):
    theta, x, x_o = data
    prior = DampedOscillator().prior
    npe = NPE(
        prior,
        density_estimator=posterior_nn(model, embedding_net=embedding, z_score_x="none"),
        tracker=NullTracker(),
        show_progress_bars=False,
    )
    npe.append_simulations(theta, x).train(max_num_epochs=1, training_batch_size=64)
    posterior = npe.build_posterior()
    check_samples(posterior.sample((20,), x=x_o, show_progress_bars=False), 20)


def test_npe_with_the_helper_and_frozen_backbone(embedding, data):
    theta, x, x_o = data
    backbone_before = params(embedding.encoder.backbone)
    head_before = params(embedding.encoder.head)
    scaling_before = embedding.input_mean.clone(), embedding.input_std.clone()
    npe = NPE(
        DampedOscillator().prior,
        density_estimator=symmetry_posterior_nn(embedding, "maf", num_transforms=2),
        tracker=NullTracker(),
        show_progress_bars=False,
    )
    npe.append_simulations(theta, x).train(max_num_epochs=2, training_batch_size=64)
    # sbi trained the very embedding object it was given.
    assert npe._neural_net.embedding_net is embedding
    for key, value in params(embedding.encoder.backbone).items():
        assert torch.equal(value, backbone_before[key]), key
    assert any(
        not torch.equal(value, head_before[key])
        for key, value in params(embedding.encoder.head).items()
    )
    assert torch.equal(embedding.input_mean, scaling_before[0])
    assert torch.equal(embedding.input_std, scaling_before[1])
    posterior = npe.build_posterior()
    check_samples(posterior.sample((10,), x=x_o, show_progress_bars=False), 10)


class BNConvEncoder(nn.Module):
    """A toy encoder with BatchNorm and Dropout in its backbone."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv1d(1, 4, 5, padding=2), nn.BatchNorm1d(4), nn.ReLU(), nn.Dropout(0.3)
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * L, 3))
        self.output_dim = 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x.unsqueeze(1)))


def test_frozen_batchnorm_statistics_do_not_change_during_npe_training(data):
    theta, x, _ = data
    torch.manual_seed(0)
    encoder = BNConvEncoder()
    with torch.no_grad():  # give the running statistics values a training step would move
        encoder(torch.randn(64, L) * 3 + 2)  # (still in train mode: updates running stats)
    embedding = SymmetryEmbedding(encoder, input_std=0.5, freeze="backbone")
    bn = encoder.backbone[1]
    before = bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked)
    npe = NPE(
        DampedOscillator().prior,
        density_estimator=embedding.posterior_nn("maf", num_transforms=1),
        tracker=NullTracker(),
        show_progress_bars=False,
    )
    npe.append_simulations(theta, x).train(max_num_epochs=1, training_batch_size=64)
    assert torch.equal(bn.running_mean, before[0])
    assert torch.equal(bn.running_var, before[1])
    assert int(bn.num_batches_tracked) == before[2]
    # ... whereas an unfrozen copy's statistics do move under the same training.
    free = SymmetryEmbedding(copy.deepcopy(encoder), input_std=0.5, freeze="none")
    npe_free = NPE(
        DampedOscillator().prior,
        density_estimator=free.posterior_nn("maf", num_transforms=1),
        tracker=NullTracker(),
        show_progress_bars=False,
    )
    npe_free.append_simulations(theta, x).train(max_num_epochs=1, training_batch_size=64)
    assert not torch.equal(free.encoder.backbone[1].running_mean, before[0])


def test_npe_with_everything_frozen(embedding, data):
    theta, x, x_o = data
    embedding.freeze = "all"
    before = params(embedding)
    npe = NPE(
        DampedOscillator().prior,
        density_estimator=posterior_nn("maf", embedding_net=embedding, z_score_x="none"),
        tracker=NullTracker(),
        show_progress_bars=False,
    )
    npe.append_simulations(theta, x).train(max_num_epochs=1, training_batch_size=64)
    after = params(embedding)
    assert all(torch.equal(after[k], before[k]) for k in before)
    posterior = npe.build_posterior()
    check_samples(posterior.sample((10,), x=x_o, show_progress_bars=False), 10)


def test_sbi_default_z_scoring_triggers_the_warning(embedding, data):
    theta, x, _ = data
    npe = NPE(
        DampedOscillator().prior,
        density_estimator=posterior_nn("maf", embedding_net=embedding, num_transforms=1),
        tracker=NullTracker(),
        show_progress_bars=False,
    )
    with pytest.warns(UserWarning, match="z_score_x='none'"):
        npe.append_simulations(theta, x).train(max_num_epochs=1, training_batch_size=64)


def test_no_warning_with_z_score_none(embedding, data):
    theta, x, _ = data
    npe = NPE(
        DampedOscillator().prior,
        density_estimator=posterior_nn(
            "maf", embedding_net=embedding, z_score_x="none", num_transforms=1
        ),
        tracker=NullTracker(),
        show_progress_bars=False,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*z_score_x.*")
        npe.append_simulations(theta, x).train(max_num_epochs=1, training_batch_size=64)


def test_fmpe_with_posterior_flow_nn(embedding, data):
    theta, x, x_o = data
    fmpe = FMPE(
        DampedOscillator().prior,
        vf_estimator=posterior_flow_nn(
            "mlp", embedding_net=embedding, z_score_x="none", hidden_features=32, num_layers=2
        ),
        tracker=NullTracker(),
        show_progress_bars=False,
    )
    fmpe.append_simulations(theta, x).train(max_num_epochs=1, training_batch_size=64)
    posterior = fmpe.build_posterior()
    check_samples(posterior.sample((10,), x=x_o, show_progress_bars=False), 10)


def test_nre_c_with_classifier_nn(embedding, data):
    theta, x, x_o = data
    nre = NRE_C(
        DampedOscillator().prior,
        classifier=classifier_nn(
            model="mlp", embedding_net_x=embedding, z_score_x="none", hidden_features=16
        ),
        tracker=NullTracker(),
        show_progress_bars=False,
    )
    nre.append_simulations(theta, x).train(max_num_epochs=1, training_batch_size=64)
    # Importance sampling with the prior as proposal: vectorised potential evaluations (slice
    # MCMC works too but calls the encoder hundreds of times on tiny batches).
    posterior = nre.build_posterior(sample_with="importance")
    check_samples(posterior.sample((8,), x=x_o, show_progress_bars=False), 8)
