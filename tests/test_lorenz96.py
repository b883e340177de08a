"""The two-scale Lorenz-96 task: equations, integrator, symmetries, statistics, input checks."""

from __future__ import annotations

import itertools

import pytest
import torch

from sbi_symmetry.tasks.lorenz96 import Lorenz96, lorenz96_tendency, rk4_step


def small(**kwargs) -> Lorenz96:
    """A cheap configuration for tests of the mechanics (the default one is tested too)."""
    config = {
        "num_slow": 8,
        "num_fast": 4,
        "burn_in": 0.5,
        "max_offset": 0.2,
        "num_snapshots": 5,
        "snapshot_interval": 0.05,
    }
    return Lorenz96(**{**config, **kwargs})


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small tensors: one intra-op thread avoids spin-waiting on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------- equations
def naive_tendency(x, y, theta):
    """The equations written index by index for one system."""
    f, h, c, b = (float(v) for v in theta)
    num_slow, num_fast = x.shape[0], y.shape[0] // x.shape[0]
    dx = torch.empty_like(x)
    for k in range(num_slow):
        coupling = sum(float(y[k * num_fast + j]) for j in range(num_fast))
        dx[k] = (
            x[(k - 1) % num_slow] * (x[(k + 1) % num_slow] - x[(k - 2) % num_slow])
            - x[k]
            + f
            - h * c / b * coupling
        )
    n = y.shape[0]
    dy = torch.empty_like(y)
    for i in range(n):
        dy[i] = (
            c * b * y[(i + 1) % n] * (y[(i - 1) % n] - y[(i + 2) % n])
            - c * y[i]
            + h * c / b * x[i // num_fast]
        )
    return dx, dy


def test_tendency_matches_the_equations_written_out():
    g = seeded(1)
    x, y = torch.randn(3, 6, generator=g, dtype=torch.float64), None
    y = torch.randn(3, 18, generator=g, dtype=torch.float64)
    theta = torch.tensor([[10.0, 1.0, 10.0, 10.0], [8.0, 0.5, 5.0, 15.0], [12.0, 1.5, 15.0, 5.0]])
    dx, dy = lorenz96_tendency(x, y, theta.double())
    for i in range(3):
        ndx, ndy = naive_tendency(x[i], y[i], theta[i])
        torch.testing.assert_close(dx[i], ndx)
        torch.testing.assert_close(dy[i], ndy)


def test_rk4_is_fourth_order():
    g = seeded(2)
    theta = torch.tensor([[10.0, 1.0, 10.0, 10.0]], dtype=torch.float64)
    x0 = 2.5 + 3 * torch.randn(1, 8, generator=g, dtype=torch.float64)
    y0 = 0.1 * torch.randn(1, 32, generator=g, dtype=torch.float64)

    def run(dt: float) -> torch.Tensor:
        x, y = x0, y0
        for _ in range(round(0.04 / dt)):
            x, y = rk4_step(x, y, theta, dt)
        return torch.cat([x, y], -1)

    exact = run(0.04 / 256)
    errors = [float((run(0.04 / m) - exact).abs().max()) for m in (8, 16)]
    assert 10 < errors[0] / errors[1] < 22  # 2^4 = 16 for a fourth-order method


# --------------------------------------------------------------------------- simulate
def test_default_configuration_matches_the_paper_sizes_and_the_encoder():
    from sbi_symmetry.nets.conv import ConvEncoder1D

    task = Lorenz96()
    assert (task.num_slow, task.num_fast) == (36, 10)
    assert task.x_shape == (16, 36) and task.theta_dim == 4 and task.nuisance_dim == 2
    x = task.simulate(task.sample_prior(3, generator=seeded()), generator=seeded())
    assert x.shape == (3, 16, 36) and x.dtype == torch.float32
    encoder = ConvEncoder1D(
        input_length=36, output_dim=3, in_channels=16, channels=4, num_blocks=1,
        kernel_size=5, padding_mode="circular",
    )  # fmt: skip
    assert encoder(x).shape == (3, 3)
    # Circular padding + mean pooling: the summary ignores the site shift.
    torch.testing.assert_close(encoder(torch.roll(x, 5, dims=-1)), encoder(x))


def test_same_generator_same_simulation_and_chunking_does_not_matter():
    task = small()
    theta = task.sample_prior(7, generator=seeded(3))
    first = task.simulate(theta, generator=seeded(4))
    assert torch.equal(first, task.simulate(theta, generator=seeded(4)))
    assert not torch.equal(first, task.simulate(theta, generator=seeded(5)))
    chunked = small(chunk_size=3).simulate(theta, generator=seeded(4))
    torch.testing.assert_close(chunked, first, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shift", [1, 3, 7])
def test_site_shift_is_a_roll_of_the_sites(shift):
    task = small()
    theta = task.sample_prior(4, generator=seeded(6))
    base = torch.tensor([[0.1, 0.0]]).repeat(4, 1)
    moved = torch.tensor([[0.1, float(shift) + 0.6]]).repeat(4, 1)  # rounded down to `shift`
    x0 = task.simulate(theta, base, generator=seeded(7))
    x1 = task.simulate(theta, moved, generator=seeded(7))
    assert torch.equal(x1, torch.roll(x0, shift, dims=-1))


def test_time_offset_slides_the_window_along_one_trajectory():
    task = small()
    theta = task.sample_prior(3, generator=seeded(8))
    early = task.simulate(theta, torch.zeros(3, 2), generator=seeded(9))
    later = task.simulate(
        theta, torch.tensor([[task.snapshot_interval, 0.0]]).repeat(3, 1), generator=seeded(9)
    )
    assert torch.equal(later[:, :-1], early[:, 1:])
    assert not torch.equal(later, early)


def test_nuisance_prior_is_sampleable_and_covers_both_symmetries():
    task = Lorenz96()
    nuisance = task.nuisance_prior.sample((500,))
    assert nuisance.shape == (500, 2)
    assert float(nuisance[:, 0].min()) >= 0 and float(nuisance[:, 0].max()) <= task.max_offset
    assert float(nuisance[:, 1].min()) >= 0 and float(nuisance[:, 1].max()) <= task.num_slow
    drawn = task.sample_nuisance(4, generator=seeded())
    assert drawn.shape == (4, 2)


def test_resimulated_views_work_with_the_task():
    from sbi_symmetry.views import ResimulatedViews

    task = small()
    view_a, view_b = ResimulatedViews(task.simulate, task.nuisance_prior)(task.sample_prior(3))
    assert view_a.shape == view_b.shape == (3, *task.x_shape)
    assert not torch.equal(view_a, view_b)


def test_integration_is_finite_over_the_whole_prior():
    task = Lorenz96()
    low, high = torch.tensor(task.theta_low), torch.tensor(task.theta_high)
    corners = torch.stack(
        [
            torch.where(torch.tensor(m).bool(), high, low)
            for m in itertools.product([0, 1], repeat=4)
        ]
    )
    theta = torch.cat([corners, task.sample_prior(48, generator=seeded(10))])
    x = task.simulate(theta, generator=seeded(11))
    assert bool(torch.isfinite(x).all())
    assert float(x.abs().max()) < 50.0  # slow variables stay O(F)


def test_observation_noise_is_added():
    clean, noisy = small(), small(noise_std=0.5)
    theta = clean.sample_prior(20, generator=seeded(12))
    nuisance = clean.sample_nuisance(20, generator=seeded(13))
    diff = noisy.simulate(theta, nuisance, generator=seeded(14)) - clean.simulate(
        theta, nuisance, generator=seeded(14)
    )
    assert 0.4 < float(diff.std()) < 0.6


def test_stationary_energy_balance_of_the_uncoupled_ring():
    # With h = 0 the slow ring is the one-scale Lorenz-96 model; the advection term conserves
    # sum X^2, so at stationarity d/dt E[sum X^2 / 2] = -E[sum X^2] + F E[sum X] = 0.
    task = Lorenz96(num_fast=4, burn_in=3.0, num_snapshots=8, snapshot_interval=0.25)
    forcing = 10.0
    theta = torch.tensor([[forcing, 0.0, 10.0, 10.0]]).repeat(64, 1)
    x = task.simulate(theta, generator=seeded(15)).double()
    ratio = float((x**2).mean() / (forcing * x.mean()))
    assert abs(ratio - 1.0) < 0.05


def test_stronger_forcing_gives_more_energetic_slow_variables():
    task = small(burn_in=1.5, num_snapshots=8, snapshot_interval=0.1)
    energy = []
    for forcing in (8.0, 12.0):
        theta = torch.tensor([[forcing, 1.0, 10.0, 10.0]]).repeat(32, 1)
        energy.append(float((task.simulate(theta, generator=seeded(16)) ** 2).mean()))
    assert energy[1] > 1.3 * energy[0]


def test_has_no_reference_posterior():
    assert not hasattr(Lorenz96(), "reference_posterior")


# --------------------------------------------------------------------------- bad input
def test_divergence_is_reported():
    task = small(dt=0.05, snapshot_interval=0.05)
    with pytest.raises(RuntimeError, match=r"diverged.*reduce `dt`"):
        task.simulate(torch.tensor([[12.0, 1.5, 60.0, 5.0]]), generator=seeded())


@pytest.mark.parametrize(
    ("theta", "match"),
    [
        (torch.ones(2, 3), r"shape \(n, 4\)"),
        (torch.tensor([[10.0, 1.0, -1.0, 10.0]]), "c > 0"),
        (torch.tensor([[10.0, -1.0, 10.0, 10.0]]), "h >= 0"),
        (torch.tensor([[float("nan"), 1.0, 10.0, 10.0]]), "NaN"),
    ],
)
def test_bad_theta_is_rejected(theta, match):
    with pytest.raises(ValueError, match=match):
        small().simulate(theta)


def test_bad_nuisance_is_rejected():
    task = small()
    theta = task.sample_prior(2)
    with pytest.raises(ValueError, match="time_offset"):
        task.simulate(theta, torch.tensor([[5.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="nuisance"):
        task.simulate(theta, torch.zeros(2, 1))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_slow": 2}, "num_slow"),
        ({"num_fast": 0}, "num_fast"),
        ({"num_snapshots": 0}, "num_snapshots"),
        ({"dt": 0.0}, "dt"),
        ({"burn_in": -1.0}, "burn_in"),
        ({"snapshot_interval": 0.0123}, "multiple of `dt`"),
        ({"chunk_size": 0}, "chunk_size"),
    ],
)
def test_bad_configuration_is_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Lorenz96(**kwargs)
