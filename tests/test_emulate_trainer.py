"""Embed and Emulate: the classifier builder in stock NRE, the trainer, its posteriors and
sbi's diagnostics on them."""

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

pytestmark = pytest.mark.usefixtures("one_thread")

FAST_MCMC = MCMCPosteriorParameters(num_chains=10, warmup_steps=20, thin=1)


def linear_gaussian(num: int, seed: int = 0) -> tuple[BoxUniform, Tensor, Tensor]:
    prior = BoxUniform(-2 * torch.ones(2), 2 * torch.ones(2))
    g = torch.Generator().manual_seed(seed)
    theta = -2 + 4 * torch.rand(num, 2, generator=g)
    return prior, theta, theta + 0.3 * torch.randn(num, 2, generator=g)


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


@pytest.mark.parametrize(
    ("emulator_kwargs", "width", "blocks"),
    [(None, 64, 2), ({"hidden_dim": 8}, 8, 2), ({"num_blocks": 0}, 64, 0)],
)
def test_builder_default_emulator_size_and_overrides(emulator_kwargs, width, blocks):
    build = embed_emulate_classifier(nn.Linear(2, 6), emulator_kwargs=emulator_kwargs)
    emulator = build(torch.randn(20, 3), torch.randn(20, 2)).emulator
    assert emulator.input_layer.out_features == width and len(emulator.blocks) == blocks
    assert emulator.input_dim == 3 and emulator.output_dim == 6


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
    """The fast preset's Embed and Emulate, trained to convergence, passes SBC (exact sampler).

    A smaller set-up (8-channel tower, the 64-wide default emulator, 3,000 simulations, 30
    epochs, sbi's MCMC) sat on the edge: SBC p-values from 0.005 to 0.84 in w0 with the same seed
    and another thread count or CPU, so its outcome was a coin toss. This one gave smallest
    p-values of 0.10-0.25 at two seeds and one or two threads.
    """
    from sbi_symmetry.nets.conv import ConvEncoder1D
    from sbi_symmetry.tasks import DampedOscillator
    from sbi_symmetry.workflow.config import RunConfig

    torch.manual_seed(0)
    cfg = RunConfig.from_preset("damped-oscillator", "fast")
    task = DampedOscillator()
    theta = task.sample_prior(5000)
    x = task.simulate(theta)
    encoder = ConvEncoder1D.for_task(task, **cfg.ee_encoder)
    trainer = EmbedEmulate(
        task.prior, encoder=encoder, show_progress_bars=False, **cfg.ee.arguments()
    )
    trainer.append_simulations(theta, x).train(learning_rate=1e-3)
    posterior = trainer.build_posterior()  # the two-tower sampler: exact rejection / IS
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
