"""Embed and Emulate: the residual MLP and the two-tower ratio estimator (builder, trainer and
posteriors: test_emulate_trainer.py)."""

from __future__ import annotations

import pytest
import torch
from sbi.utils import BoxUniform
from torch import Tensor, nn

from sbi_symmetry.emulate import EmbedEmulate, EmbedEmulateRatioEstimator
from sbi_symmetry.losses.infonce import symmetric_infonce
from sbi_symmetry.nets.mlp import ResidualMLP

pytestmark = pytest.mark.usefixtures("one_thread")


class Counting(nn.Module):
    """Wraps a module and records how many rows it was asked to encode."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.rows: list[int] = []

    def forward(self, x: Tensor) -> Tensor:
        self.rows.append(x.shape[0])
        return self.inner(x)


def make_estimator(x_dim: int = 5, width: int = 4, **kwargs) -> EmbedEmulateRatioEstimator:
    g = torch.Generator().manual_seed(1)
    theta, x = torch.randn(40, 2, generator=g), torch.randn(40, x_dim, generator=g)
    return EmbedEmulateRatioEstimator(
        Counting(nn.Linear(x_dim, width)), nn.Linear(2, width), theta, x, **kwargs
    )


# --------------------------------------------------------------------------- ResidualMLP
def test_residual_mlp_shapes_and_batch_of_one():
    net = ResidualMLP(3, 5, hidden_dim=8, num_blocks=2)
    assert net(torch.randn(1, 3)).shape == (1, 5)
    assert net(torch.randn(4, 7, 3)).shape == (4, 7, 5)
    # No batch statistics: a row's output does not depend on the rest of the batch.
    batch = torch.randn(6, 3)
    torch.testing.assert_close(net(batch)[2:3], net(batch[2:3]))


def test_residual_mlp_blocks_start_as_identity():
    net = ResidualMLP(3, 5, hidden_dim=8, num_blocks=3)
    x = torch.randn(4, 3)
    direct = net.output_layer(net.final_activation(net.input_layer(x)))
    torch.testing.assert_close(net(x), direct)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"input_dim": 0, "output_dim": 2}, "input_dim"),
        ({"input_dim": 2, "output_dim": 2, "hidden_dim": -1}, "hidden_dim"),
        ({"input_dim": 2, "output_dim": 2, "num_blocks": -1}, "num_blocks"),
    ],
)
def test_residual_mlp_rejects_bad_sizes(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ResidualMLP(**kwargs)


def test_residual_mlp_rejects_wrong_width():
    with pytest.raises(ValueError, match="last dimension 3"):
        ResidualMLP(3, 2)(torch.randn(4, 2))


# --------------------------------------------------------------------------- estimator
def test_log_ratio_is_the_scaled_cosine_of_the_towers():
    est = make_estimator(temperature=0.5)
    theta, x = torch.randn(7, 2), torch.randn(7, 5)
    f = nn.functional.normalize(est.encoder(x), dim=-1)
    mean, std = est.embedding_net_theta[0].shift, est.embedding_net_theta[0].scale
    g = nn.functional.normalize(est.emulator((theta - mean) / std), dim=-1)
    torch.testing.assert_close(est.unnormalized_log_ratio(theta, x), (f * g).sum(-1) / 0.5)
    assert est(theta, x).shape == (7,)


def test_dot_similarity_without_z_scoring():
    est = make_estimator(similarity="dot", z_score_theta=False, temperature=2.0)
    theta, x = torch.randn(3, 2), torch.randn(3, 5)
    expected = (est.encoder(x) * est.emulator(theta)).sum(-1) / 2.0
    torch.testing.assert_close(est.unnormalized_log_ratio(theta, x), expected)


def test_scaled_similarity_keeps_the_data_norm_and_normalises_the_emulator():
    est = make_estimator(similarity="scaled", z_score_theta=False, temperature=0.5)
    theta, x = torch.randn(6, 2), torch.randn(6, 5)
    g = nn.functional.normalize(est.emulator(theta), dim=-1)
    expected = (est.encoder(x) * g).sum(-1) / 0.5
    torch.testing.assert_close(est.unnormalized_log_ratio(theta, x), expected)
    bound = est.encoder(x).norm(dim=-1) / 0.5  # Cauchy-Schwarz: the rejection sampler's bound
    assert bool((est.unnormalized_log_ratio(theta, x) <= bound + 1e-6).all())


def test_sample_and_batch_dimensions_broadcast():
    est = make_estimator()
    theta, x = torch.randn(4, 3, 2), torch.randn(3, 5)
    out = est.unnormalized_log_ratio(theta, x)
    assert out.shape == (4, 3)
    for s in range(4):
        torch.testing.assert_close(out[s], est.unnormalized_log_ratio(theta[s], x))


def test_structured_x_scoring_keeps_one_scalar_and_embedding_net_includes_it():
    g = torch.Generator().manual_seed(0)
    theta, x = torch.randn(30, 2, generator=g), 3 + 2 * torch.randn(30, 6, generator=g)
    est = EmbedEmulateRatioEstimator(
        nn.Linear(6, 4), nn.Linear(2, 4), theta, x, z_score_x="structured"
    )
    standardize = est.embedding_net[0]
    assert standardize.shift.shape == () and standardize.scale.shape == ()
    torch.testing.assert_close(est.embedding_net(x), est.encoder((x - x.mean()) / x.std()))


def test_repeated_observation_is_encoded_once():
    est = make_estimator()
    encoder = est.encoder
    x_o = torch.randn(1, 5)
    theta = torch.randn(50, 2)
    est.train()  # no cache: this checks the within-call deduplication
    encoder.rows.clear()
    out = est.unnormalized_log_ratio(theta, x_o.repeat(50, 1))
    assert encoder.rows == [1]
    torch.testing.assert_close(out, est.unnormalized_log_ratio(theta, x_o.expand(50, 5) + 0))


def test_consecutive_runs_are_encoded_once_each():
    est = make_estimator()
    est.train()
    encoder = est.encoder
    x = torch.randn(3, 5)
    runs = x.repeat_interleave(4, dim=0)  # AAAABBBBCCCC, as sbi's repeat_rows / iid trials
    theta = torch.randn(12, 2)
    encoder.rows.clear()
    out = est.unnormalized_log_ratio(theta, runs)
    assert encoder.rows == [3]
    f = nn.functional.normalize(encoder.inner(runs), dim=-1)
    g = est.emulate(theta)
    torch.testing.assert_close(out, (f * g).sum(-1) / est.temperature)


def test_gradients_flow_through_deduplicated_rows():
    est = make_estimator()
    est.train()
    x = torch.randn(2, 5).repeat_interleave(3, dim=0)
    est.unnormalized_log_ratio(torch.randn(6, 2), x).sum().backward()
    assert est.encoder.inner.weight.grad is not None


def test_cached_and_uncached_log_ratios_are_identical():
    est = make_estimator()
    est.eval()
    encoder = est.encoder
    x_o, theta = torch.randn(1, 5), torch.randn(20, 2)
    encoder.rows.clear()
    first = est.unnormalized_log_ratio(theta, x_o.repeat(20, 1))
    second = est.unnormalized_log_ratio(theta, x_o.repeat(20, 1))
    assert encoder.rows == [1]  # the second call used the cache
    est.cache_enabled = False
    uncached = est.unnormalized_log_ratio(theta, x_o.repeat(20, 1))
    assert encoder.rows == [1, 1]
    assert torch.equal(first, second) and torch.equal(first, uncached)


def test_cache_is_invalidated_by_parameter_updates_new_data_and_mode_switches():
    est = make_estimator()
    est.eval()
    encoder = est.encoder
    x_o, theta = torch.randn(1, 5), torch.randn(8, 2)
    before = est.unnormalized_log_ratio(theta, x_o.repeat(8, 1))
    encoder.rows.clear()
    # An optimiser step changes the encoder in place (the cached embedding is detached, so
    # the gradient is set by hand here, as a training step in train mode would).
    optimizer = torch.optim.SGD(encoder.parameters(), lr=0.5)
    for p in encoder.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()
    after = est.unnormalized_log_ratio(theta, x_o.repeat(8, 1))
    assert encoder.rows == [1] and not torch.equal(before, after)
    # load_state_dict copies new values in place.
    state = {k: v + 0.1 for k, v in est.state_dict().items()}
    est.load_state_dict(state)
    est.unnormalized_log_ratio(theta, x_o.repeat(8, 1))
    assert encoder.rows == [1, 1]
    # A different observation, then a mode switch.
    est.unnormalized_log_ratio(theta, torch.randn(1, 5).repeat(8, 1))
    assert encoder.rows == [1, 1, 1]
    est.train()
    est.eval()
    est.unnormalized_log_ratio(theta, x_o.repeat(8, 1))
    assert encoder.rows == [1, 1, 1, 1]
    # Moving or casting the estimator (here a no-op cast) drops the cache too.
    est.float()
    est.unnormalized_log_ratio(theta, x_o.repeat(8, 1))
    assert encoder.rows == [1, 1, 1, 1, 1]


def test_no_cache_in_training_mode():
    est = make_estimator()
    est.train()
    encoder = est.encoder
    x_o, theta = torch.randn(1, 5), torch.randn(4, 2)
    encoder.rows.clear()
    est.unnormalized_log_ratio(theta, x_o.repeat(4, 1))
    est.unnormalized_log_ratio(theta, x_o.repeat(4, 1))
    assert encoder.rows == [1, 1]


def test_loss_and_logits_are_the_symmetric_infonce_of_the_towers():
    est = make_estimator(temperature=0.3)
    theta, x = torch.randn(9, 2), torch.randn(9, 5)
    logits = est.logits(theta, x)
    assert logits.shape == (9, 9)
    torch.testing.assert_close(logits.diagonal(), est.unnormalized_log_ratio(theta, x))
    expected = symmetric_infonce(est.encode(x), est.emulate(theta), est.temperature)
    torch.testing.assert_close(est.loss(theta, x), expected)


def test_learned_temperature_is_a_clamped_parameter():
    est = make_estimator(learn_temperature=True, temperature=0.2, temperature_bounds=(0.1, 1.0))
    assert isinstance(est.log_temperature, nn.Parameter)
    est.loss(torch.randn(6, 2), torch.randn(6, 5)).mean().backward()
    assert est.log_temperature.grad is not None
    with torch.no_grad():
        est.log_temperature.fill_(10.0)
    assert float(est.temperature.detach()) == pytest.approx(1.0)
    assert isinstance(make_estimator().log_temperature, nn.Parameter)  # learned by default
    fixed = make_estimator(temperature=0.2, learn_temperature=False)
    assert "log_temperature" not in dict(fixed.named_parameters())


@pytest.mark.parametrize("temperature", [0.0, -0.5])
def test_rejects_non_positive_temperature(temperature):
    with pytest.raises(ValueError, match="temperature"):
        make_estimator(temperature=temperature)


@pytest.mark.parametrize("temperature", [0.0, 5000.0])
def test_the_trainer_refuses_a_temperature_outside_the_bounds_before_training(temperature):
    with pytest.raises(ValueError, match="`temperature` must be"):
        EmbedEmulate(BoxUniform(torch.zeros(2), torch.ones(2)), temperature=temperature)


def test_rejects_towers_of_different_width():
    theta, x = torch.randn(10, 2), torch.randn(10, 5)
    with pytest.raises(ValueError, match=r"same output width.*encoder gives 4.*emulator 3"):
        EmbedEmulateRatioEstimator(nn.Linear(5, 4), nn.Linear(2, 3), theta, x)


def test_rejects_theta_of_the_wrong_width():
    est = make_estimator()
    with pytest.raises(ValueError, match=r"theta.*\(\.\.\., 2\)"):
        est.unnormalized_log_ratio(torch.randn(4, 3), torch.randn(4, 5))


def test_rejects_multidimensional_x_without_batch_dimension():
    theta, x = torch.randn(10, 2), torch.randn(10, 3, 6)
    est = EmbedEmulateRatioEstimator(
        nn.Sequential(nn.Flatten(), nn.Linear(18, 4)), nn.Linear(2, 4), theta, x
    )
    with pytest.raises(ValueError, match=r"explicit batch dimension.*\(1, 3, 6\)"):
        est.unnormalized_log_ratio(torch.randn(4, 2), torch.randn(3, 6))


def test_rejects_unbroadcastable_batches_and_bad_options():
    est = make_estimator()
    with pytest.raises(ValueError, match="broadcastable"):
        est.unnormalized_log_ratio(torch.randn(4, 2), torch.randn(3, 5))
    with pytest.raises(ValueError, match="similarity"):
        make_estimator(similarity="euclid")
    with pytest.raises(ValueError, match="z_score_x"):
        make_estimator(z_score_x="independent")


def test_probing_leaves_module_modes_alone():
    encoder = nn.Sequential(nn.Linear(5, 4), nn.Dropout(0.5))
    encoder.train()
    theta, x = torch.randn(10, 2), torch.randn(10, 5)
    est = EmbedEmulateRatioEstimator(encoder, nn.Linear(2, 4), theta, x)
    assert est.training and encoder[1].training
