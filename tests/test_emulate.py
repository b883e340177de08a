"""Embed and Emulate: the residual MLP, the two-tower ratio estimator, its builder and trainer."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from sbi.diagnostics import check_sbc, check_tarp, run_sbc, run_tarp
from sbi.diagnostics.misspecification import calc_misspecification_mmd
from sbi.inference import NRE_B, NRE_C
from sbi.inference.posteriors.posterior_parameters import MCMCPosteriorParameters
from sbi.utils import BoxUniform
from torch import Tensor, nn

from sbi_symmetry._sbi_compat import NullTracker
from sbi_symmetry.emulate import EmbedEmulate, EmbedEmulateRatioEstimator, embed_emulate_classifier
from sbi_symmetry.losses.infonce import symmetric_infonce
from sbi_symmetry.nets.mlp import ResidualMLP

FAST_MCMC = MCMCPosteriorParameters(num_chains=10, warmup_steps=20, thin=1)


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


def linear_gaussian(num: int, seed: int = 0) -> tuple[BoxUniform, Tensor, Tensor]:
    prior = BoxUniform(-2 * torch.ones(2), 2 * torch.ones(2))
    g = torch.Generator().manual_seed(seed)
    theta = -2 + 4 * torch.rand(num, 2, generator=g)
    return prior, theta, theta + 0.3 * torch.randn(num, 2, generator=g)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These networks are tiny: one intra-op thread avoids spin-waiting on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained() -> EmbedEmulate:
    """A small E&E fitted on a 2-D linear-Gaussian problem (shared by the posterior tests)."""
    torch.manual_seed(0)
    prior, theta, x = linear_gaussian(1000)
    trainer = EmbedEmulate(
        prior,
        encoder=ResidualMLP(2, 8, hidden_dim=16, num_blocks=1),
        emulator=ResidualMLP(2, 8, hidden_dim=16, num_blocks=1),
        show_progress_bars=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.append_simulations(theta, x).train(max_num_epochs=15)
    return trainer


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


# --------------------------------------------------------------------------- builder
@pytest.mark.parametrize("trainer_cls", [NRE_B, NRE_C])
def test_builder_plugs_into_stock_nre(trainer_cls):
    torch.manual_seed(0)
    prior, theta, x = linear_gaussian(200)
    build = embed_emulate_classifier(nn.Linear(2, 6), emulator_kwargs={"hidden_dim": 8})
    nre = trainer_cls(prior, classifier=build, tracker=NullTracker(), show_progress_bars=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator = nre.append_simulations(theta, x).train(max_num_epochs=1)
    assert isinstance(estimator, EmbedEmulateRatioEstimator)
    assert isinstance(estimator.emulator, ResidualMLP) and estimator.embedding_dim == 6
    assert len(nre.summary["training_loss"]) == 2  # sbi: max_num_epochs=N trains N + 1


def test_builder_default_encoder_flattens():
    build = embed_emulate_classifier(embedding_dim=5)
    est = build(torch.randn(20, 3), torch.randn(20, 2, 4))
    assert est.embedding_dim == 5
    assert est.unnormalized_log_ratio(torch.randn(2, 3), torch.randn(2, 2, 4)).shape == (2,)


# --------------------------------------------------------------------------- trainer
def test_trainer_loss_is_the_per_pair_symmetric_infonce(trained):
    net = trained._neural_net
    _, theta, x = linear_gaussian(16, seed=3)
    losses = trained._loss(theta, x, num_atoms=2)
    assert losses.shape == (16,)
    expected = symmetric_infonce(net.encode(x), net.emulate(theta), net.temperature)
    torch.testing.assert_close(losses, expected)


def test_training_lowers_the_loss_and_writes_no_logs(trained):
    summary = trained.summary
    assert summary["validation_loss"][-1] < summary["validation_loss"][0]
    assert not Path("sbi-logs").exists()
    assert isinstance(trained._tracker, NullTracker)


def test_trainer_rejects_inconsistent_arguments():
    prior = BoxUniform(-torch.ones(2), torch.ones(2))
    with pytest.raises(ValueError, match="either `classifier`"):
        EmbedEmulate(prior, encoder=nn.Linear(2, 2), classifier=embed_emulate_classifier())
    with pytest.raises(TypeError, match="builder"):
        EmbedEmulate(prior, classifier="resnet")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs `views`"):
        EmbedEmulate(prior, symmetry_weight=1.0)
    with pytest.raises(ValueError, match="symmetry_weight"):
        EmbedEmulate(prior, symmetry_weight=-1.0)
    with pytest.raises(TypeError, match="input_kind"):
        EmbedEmulate(prior, views=lambda t: (t, t), symmetry_weight=1.0)
    trainer = EmbedEmulate(prior, show_progress_bars=False)
    _, theta, x = linear_gaussian(20)
    with pytest.raises(ValueError, match="training_batch_size"):
        trainer.append_simulations(theta, x).train(training_batch_size=1)


def test_trainer_rejects_a_builder_of_another_estimator():
    from sbi.neural_nets import classifier_nn

    prior, theta, x = linear_gaussian(50)
    trainer = EmbedEmulate(prior, classifier=classifier_nn("mlp"), show_progress_bars=False)
    with pytest.raises(TypeError, match="EmbedEmulateRatioEstimator"):
        trainer.append_simulations(theta, x).train(max_num_epochs=1)


@pytest.mark.filterwarnings("ignore:Maximum number of epochs")
def test_symmetry_regulariser_uses_fresh_views_during_training_only():
    from sbi_symmetry.nets.conv import ConvEncoder1D
    from sbi_symmetry.tasks import DampedOscillator
    from sbi_symmetry.views import ResimulatedViews

    torch.manual_seed(0)
    task = DampedOscillator()
    theta = task.sample_prior(60)
    x = task.simulate(theta)
    calls: list[int] = []

    class Spy(ResimulatedViews):
        def __call__(self, batch: Tensor) -> tuple[Tensor, Tensor]:
            calls.append(batch.shape[0])
            return super().__call__(batch)

    encoder = ConvEncoder1D(input_length=200, output_dim=4, channels=4, num_blocks=1, kernel_size=5)
    trainer = EmbedEmulate(
        task.prior,
        encoder=encoder,
        views=Spy(task.simulate, task.nuisance_prior),
        symmetry_weight=0.1,
        show_progress_bars=False,
    )
    trainer.append_simulations(theta, x).train(training_batch_size=20, max_num_epochs=1)
    assert calls == [20] * 4  # 2 epochs x 2 batches of 20 (54 training pairs); not in validation
    net = trainer._neural_net
    net.train()
    _, theta_b, x_b = theta, theta[:20], x[:20]
    with_term = trainer._loss(theta_b, x_b)
    pure = net.loss(theta_b, x_b)
    assert bool((with_term > pure).all())


# --------------------------------------------------------------------------- posteriors
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("method", ["mcmc", "rejection", "importance", "vi"])
def test_every_posterior_sampler_works(trained, method):
    x_o = torch.tensor([[0.5, -0.5]])
    kwargs = {"posterior_parameters": FAST_MCMC} if method == "mcmc" else {}
    posterior = trained.build_posterior(sample_with=method, **kwargs)
    if method == "vi":
        posterior.set_default_x(x_o)
        posterior.train(max_num_iters=50, show_progress_bar=False)
        samples = posterior.sample((100,), show_progress_bars=False)
    else:
        samples = posterior.sample((100,), x=x_o, show_progress_bars=False)
    assert samples.shape == (100, 2) and bool(torch.isfinite(samples).all())
    assert bool(((samples > -2) & (samples < 2)).all())
    log_prob = posterior.log_prob(samples[:5], x=x_o)
    assert log_prob.shape == (5,) and bool(torch.isfinite(log_prob).all())


def test_posterior_concentrates_near_the_observation(trained):
    posterior = trained.build_posterior(sample_with="importance")
    near = posterior.log_prob(torch.tensor([[1.0, 1.0]]), x=torch.tensor([[1.0, 1.0]]))
    far = posterior.log_prob(torch.tensor([[-1.5, -1.5]]), x=torch.tensor([[1.0, 1.0]]))
    assert float(near) > float(far) + 1.0


def test_multidimensional_x_o_without_batch_dimension_is_a_clear_error():
    torch.manual_seed(0)
    prior = BoxUniform(-torch.ones(2), torch.ones(2))
    theta = prior.sample((60,))
    x = theta.repeat(1, 6).reshape(60, 3, 4) + 0.1 * torch.randn(60, 3, 4)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
    trainer = EmbedEmulate(prior, encoder=encoder, show_progress_bars=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.append_simulations(theta, x).train(max_num_epochs=1)
    posterior = trainer.build_posterior(sample_with="importance")
    with pytest.raises(ValueError, match=r"\(1, 3, 4\)"):
        posterior.sample((10,), x=x[0], show_progress_bars=False)
    assert posterior.sample((10,), x=x[:1], show_progress_bars=False).shape == (10, 2)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_sbc_and_tarp_run_unchanged(trained):
    posterior = trained.build_posterior(posterior_parameters=FAST_MCMC)
    _, theta, x = linear_gaussian(20, seed=7)
    ranks, dap = run_sbc(theta, x, posterior, num_posterior_samples=30, show_progress_bar=False)
    checks = check_sbc(ranks, theta, dap, num_posterior_samples=30)
    assert ranks.shape == (20, 2) and checks["ks_pvals"].shape == (2,)
    ecp, alpha = run_tarp(theta, x, posterior, num_posterior_samples=30, show_progress_bar=False)
    atc, p_value = check_tarp(ecp, alpha)
    assert ecp.shape == alpha.shape and abs(atc) < 50.0 and 0.0 <= p_value <= 1.0


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_lc2st_runs_unchanged(trained):
    from sbi.diagnostics.lc2st import LC2ST

    posterior = trained.build_posterior(
        posterior_parameters=MCMCPosteriorParameters(num_chains=1, warmup_steps=20, thin=1)
    )
    _, theta, x = linear_gaussian(60, seed=11)
    samples = posterior.sample_batched((1,), x=x, show_progress_bars=False)[0]
    lc2st = LC2ST(theta, x, samples, num_trials_null=3, classifier_kwargs={"max_iter": 50})
    lc2st.train_under_null_hypothesis(verbosity=0).train_on_observed_data(verbosity=0)
    x_o = x[:1]
    p_value = lc2st.p_value(posterior.sample((50,), x=x_o, show_progress_bars=False), x_o)
    assert 0.0 <= p_value <= 1.0


def test_embedding_space_misspecification_check_sees_the_encoder(trained):
    assert trained._neural_net.embedding_net is trained._neural_net.encoder
    _, _, x = linear_gaussian(100, seed=5)
    p_value, _ = calc_misspecification_mmd(
        x[:1], x, inference=trained, mode="embedding", n_shuffle=20
    )
    assert 0.0 <= p_value <= 1.0
    p_far, _ = calc_misspecification_mmd(
        torch.full((1, 2), 30.0), x, inference=trained, mode="embedding", n_shuffle=20
    )
    assert p_far <= p_value


# --------------------------------------------------------------------------- slow checks
@pytest.mark.slow
def test_linear_gaussian_posterior_matches_the_analytic_one():
    from sbi.utils.metrics import c2st
    from torch.distributions import MultivariateNormal

    torch.manual_seed(0)
    sigma = 0.5
    prior = MultivariateNormal(torch.zeros(2), torch.eye(2))
    theta = prior.sample((2000,))
    x = theta + sigma * torch.randn(2000, 2)
    trainer = EmbedEmulate(
        prior,
        encoder=ResidualMLP(2, 16, hidden_dim=32),
        emulator=ResidualMLP(2, 16, hidden_dim=32),
        show_progress_bars=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.append_simulations(theta, x).train(
            learning_rate=1e-3, stop_after_epochs=10, max_num_epochs=60
        )
    posterior = trainer.build_posterior()
    shrink, spread = 1 / (1 + sigma**2), (sigma**2 / (1 + sigma**2)) ** 0.5
    scores = []
    for _ in range(3):
        x_o = torch.randn(1, 2) * (1 + sigma**2) ** 0.5
        samples = posterior.sample((1000,), x=x_o, show_progress_bars=False)
        reference = shrink * x_o + spread * torch.randn(1000, 2)
        scores.append(float(c2st(samples, reference)))
    assert sum(scores) / len(scores) <= 0.6, scores


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_sbc_on_the_damped_oscillator():
    from sbi_symmetry.nets.conv import ConvEncoder1D
    from sbi_symmetry.tasks import DampedOscillator

    torch.manual_seed(0)
    task = DampedOscillator()
    theta = task.sample_prior(3000)
    x = task.simulate(theta)
    encoder = ConvEncoder1D(input_length=200, output_dim=8, channels=8, num_blocks=2, kernel_size=9)
    trainer = EmbedEmulate(
        task.prior, encoder=encoder, learn_temperature=True, show_progress_bars=False
    )
    trainer.append_simulations(theta, x).train(
        learning_rate=1e-3, stop_after_epochs=5, max_num_epochs=30
    )
    posterior = trainer.build_posterior(
        posterior_parameters=MCMCPosteriorParameters(num_chains=4, warmup_steps=50, thin=1)
    )
    theta_test = task.sample_prior(100)
    x_test = task.simulate(theta_test)
    ranks, dap = run_sbc(
        theta_test, x_test, posterior, num_posterior_samples=100, show_progress_bar=False
    )
    checks = check_sbc(ranks, theta_test, dap, num_posterior_samples=100)
    assert bool((checks["ks_pvals"] > 0.01).all()), checks
    assert bool((checks["c2st_dap"] < 0.65).all()), checks
    # The posterior has learned something: it is narrower than the prior.
    samples = posterior.sample((200,), x=x_test[:1], show_progress_bars=False)
    prior_std = (torch.tensor(task.theta_high) - torch.tensor(task.theta_low)) / 12**0.5
    assert bool((samples.std(0) < 0.8 * prior_std).all())
