"""Noise-filled time shifts, views of stored simulations, and the budget split.

Statistical checks are seeded, and each tolerance is a fixed number of standard errors computed
from the sample size (5 SE per compared quantity; with a few hundred quantities per test a
false alarm under the null has probability below 1e-4, and the seeds make every run the same).
"""

from __future__ import annotations

import math

import pytest
import torch
from _helpers_benchmarks import load_script
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from sbi_symmetry.symmetry.pretrain import pretrain_vicreg
from sbi_symmetry.tasks import DampedOscillator, Lorenz96, SineGaussian
from sbi_symmetry.views import (
    AugmentedViews,
    BudgetSplit,
    NoisyTimeShift,
    TimeShift,
    default_max_shift,
    noise_filled_shift,
    resolve_pretrain_views,
    shift_views,
    split_budget,
    time_shift,
)
from sbi_symmetry.views.budget import min_rows

Z = 5.0  # tolerance in standard errors


def entering_mask(shifts: torch.Tensor, length: int) -> torch.Tensor:
    """(B, L): True where the sample entered the window (t - s outside [0, L))."""
    source = torch.arange(length)[None] - shifts[:, None]
    return (source < 0) | (source >= length)


# ------------------------------------------------------------------------------- contracts
@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 6),
    channels=st.one_of(st.none(), st.integers(1, 3)),
    length=st.integers(2, 24),
    data=st.data(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_shape_dtype_device_and_kept_samples(batch, channels, length, data, dtype):
    shape = (batch, length) if channels is None else (batch, channels, length)
    x = torch.randn(shape, dtype=dtype, generator=torch.Generator().manual_seed(length))
    rows = st.lists(st.integers(-length, length), min_size=batch, max_size=batch)
    shifts = torch.tensor(data.draw(rows))
    out = noise_filled_shift(x, shifts, noise_std=0.7)
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    kept = ~entering_mask(shifts, length)
    kept = kept if channels is None else kept[:, None].expand(shape)
    assert torch.equal(out[kept], time_shift(x, shifts)[kept])
    max_shift = data.draw(st.integers(0, length - 1))
    module_out = NoisyTimeShift(max_shift, 0.7)(x)
    assert module_out.shape == x.shape and module_out.dtype == dtype


@settings(max_examples=30, deadline=None)
@given(
    channels=st.one_of(st.none(), st.integers(1, 3)),
    length=st.integers(2, 20),
    max_shift=st.integers(0, 19),
    seed=st.integers(0, 2**16),
)
def test_zero_noise_is_time_shift_and_each_row_is_one_shift_in_range(
    channels, length, max_shift, seed
):
    max_shift = min(max_shift, length - 1)
    shape = (8, length) if channels is None else (8, channels, length)
    x = torch.arange(1.0, 1.0 + math.prod(shape)).reshape(shape)  # no zeros in the data
    torch.manual_seed(seed)
    noisy = NoisyTimeShift(max_shift, noise_std=0.0)(x)
    torch.manual_seed(seed)
    zeros = TimeShift(max_shift)(x)
    assert torch.equal(noisy, zeros)  # same shifts from the same global draws, zeros filled
    for b in range(8):
        found = [
            s
            for s in range(-max_shift, max_shift + 1)
            if torch.equal(time_shift(x[b : b + 1], torch.tensor([s])), noisy[b : b + 1])
        ]
        assert len(found) == 1


def test_the_same_shift_for_every_channel_of_a_row():
    torch.manual_seed(3)
    x = torch.arange(1.0, 1.0 + 16 * 3 * 30).reshape(16, 3, 30)
    out = NoisyTimeShift(6, noise_std=torch.tensor([0.0, 0.0, 0.0]))(x)
    assert torch.equal(out == 0, (out == 0)[:, :1].expand_as(out))


def test_generator_reproduces_and_leaves_the_global_stream_alone():
    x = torch.randn(10, 40)
    before = torch.get_rng_state()
    a = NoisyTimeShift(5, 0.4, generator=torch.Generator().manual_seed(1))(x)
    b = NoisyTimeShift(5, 0.4, generator=torch.Generator().manual_seed(1))(x)
    assert torch.equal(a, b)
    assert torch.equal(torch.get_rng_state(), before)
    assert not torch.equal(a, NoisyTimeShift(5, 0.4, generator=torch.Generator())(x))


def test_buffer_moves_with_the_module_and_is_in_the_state_dict():
    shift = NoisyTimeShift(2, torch.tensor([0.5, 1.0]))
    assert torch.equal(shift.state_dict()["noise_std"], torch.tensor([0.5, 1.0]))
    assert shift.to(torch.float64).noise_std.dtype == torch.float64
    out = shift(torch.zeros(3, 2, 10, dtype=torch.float32))  # cast to the data's dtype
    assert out.dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_data_stays_on_cuda_with_a_cpu_generator():
    x = torch.randn(64, 2, 50, device="cuda")
    shift = NoisyTimeShift(10, torch.tensor([0.3, 0.6]), generator=torch.Generator())
    out = shift(x)
    assert out.device == x.device and out.shape == x.shape
    torch.manual_seed(0)
    assert shift_views(DampedOscillator())(x[:, 0])[0].device == x.device


# ------------------------------------------------------------------------------- statistics
def _check_mean_std(values: torch.Tensor, std: float) -> None:
    """Mean 0 and standard deviation ``std`` within Z standard errors of ``values.numel()``."""
    n = values.numel()
    values = values.double()
    assert abs(float(values.mean())) < Z * std / math.sqrt(n)
    assert abs(float(values.std()) - std) < Z * std / math.sqrt(2 * (n - 1))


def test_entering_samples_of_pure_noise_have_the_noise_law():
    g = torch.Generator().manual_seed(0)
    sigma = 0.4
    x = sigma * torch.randn(4000, 200, generator=g)  # pure noise: the task at a zero signal
    shifts = torch.randint(-72, 73, (4000,), generator=g)
    out = noise_filled_shift(x, shifts, sigma, generator=g)
    mask = entering_mask(shifts, 200)
    assert int(mask.sum()) > 100_000
    _check_mean_std(out[mask], sigma)
    _check_mean_std(out.flatten(), sigma)  # the whole view: white noise of the same level
    # and uncorrelated with the neighbouring sample (white): lag-1 correlation ~ N(0, 1/n)
    pairs = out[:, :-1].flatten().double(), out[:, 1:].flatten().double()
    corr = float(torch.corrcoef(torch.stack(pairs))[0, 1])
    assert abs(corr) < Z / math.sqrt(pairs[0].numel())


def test_per_channel_noise_std():
    torch.manual_seed(1)
    std = torch.tensor([0.0, 2.0, 0.5])
    x = torch.zeros(3000, 3, 60)
    out = NoisyTimeShift(30, std)(x)
    assert torch.equal(out[:, 0], torch.zeros(3000, 60))  # zero std: zeros (nothing else moved)
    for c in (1, 2):
        filled = out[:, c][out[:, c] != 0]
        assert filled.numel() > 10_000
        _check_mean_std(filled, float(std[c]))


@pytest.mark.parametrize("k", [25, 60, -3])
def test_shifted_stored_simulations_match_resimulation_at_the_shifted_nuisance(k):
    """Per-sample mean and variance: shifted stored views vs fresh draws at shift + k dt.

    The damped oscillator is zero before it switches on, so for k > 0 (samples enter at the
    start, times before the switch-on) the whole window must agree; for k < 0 the samples
    entering at the end miss the decayed tail, so only the kept region is compared there.
    """
    task = DampedOscillator()
    g = torch.Generator().manual_seed(10 + k)
    n, shift = 4000, 0.0
    theta = torch.tensor([[1.2, 0.2]]).expand(n, 2)
    stored = task.simulate(theta, torch.full((n, 1), shift), generator=g)
    views = noise_filled_shift(stored, torch.full((n,), k), task.noise_std, generator=g)
    fresh = task.simulate(theta, torch.full((n, 1), shift + k * task.dt), generator=g)
    region = slice(None) if k > 0 else slice(0, task.num_samples + k)
    a, b = views[:, region].double(), fresh[:, region].double()
    var = task.noise_std**2
    se_mean = math.sqrt(2 * var / n)
    se_var = math.sqrt(2 * 2 * var**2 / (n - 1))
    assert float((a.mean(0) - b.mean(0)).abs().max()) < Z * se_mean
    assert float((a.var(0) - b.var(0)).abs().max()) < Z * se_var
    # the test has power: a zero fill (TimeShift) fails the variance check where samples enter
    if k > 0:
        zero = time_shift(stored, torch.full((n,), k)).double()
        assert float((zero.var(0) - b.var(0)).abs().max()) > Z * se_var


def test_views_over_the_prior_are_signal_plus_white_noise_where_they_should_be():
    """Over prior draws: view minus the signal at the shifted nuisance is N(0, sigma^2) on the
    kept samples (always) and on the entering samples where that signal vanishes."""
    task = DampedOscillator()
    g = torch.Generator().manual_seed(4)
    n = 4000
    theta = task.sample_prior(n, generator=g)
    nuisance = task.sample_nuisance(n, generator=g)
    k = torch.randint(-40, 41, (n,), generator=g)
    views = noise_filled_shift(task.simulate(theta, nuisance, generator=g), k, task.noise_std, g)
    signal = task.signal(theta, nuisance + k[:, None] * task.dt)
    residual = views - signal
    entering = entering_mask(k, task.num_samples)
    _check_mean_std(residual[~entering], task.noise_std)
    quiet = entering & (signal.abs() < 1e-3)
    assert int(quiet.sum()) > 10_000
    _check_mean_std(residual[quiet], task.noise_std)


# ------------------------------------------------------------------------------- tasks
def test_default_max_shift_is_half_the_prior_width_in_samples():
    for task in (DampedOscillator(), SineGaussian()):
        width = task.nuisance_high[0] - task.nuisance_low[0]
        assert default_max_shift(task) == round(width / task.dt / 2)
        shift = shift_views(task).augmentation
        assert isinstance(shift, NoisyTimeShift)
        assert shift.max_shift == default_max_shift(task) < task.num_samples
        assert float(shift.noise_std) == task.noise_std
    assert shift_views(DampedOscillator(), max_shift=5).augmentation.max_shift == 5


def test_pretraining_from_stored_simulations_calls_no_simulator():
    task = DampedOscillator()
    calls = []
    simulate = task.simulate
    x = task.simulate(task.sample_prior(300, generator=torch.Generator().manual_seed(0)))
    task.simulate = lambda *a, **kw: calls.append(1) or simulate(*a, **kw)  # type: ignore
    views = shift_views(task)
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(200, 16), nn.ReLU(), nn.Linear(16, 4))
    embedding = pretrain_vicreg(
        encoder, views, x=x, batch_size=64, max_epochs=2, freeze="none", show_progress_bar=False
    )
    assert calls == []
    assert len(embedding.history["val_total"]) == 2
    assert all(math.isfinite(v) for v in embedding.history["val_total"])


# ------------------------------------------------------------------------------- errors
def test_errors_name_the_bad_input():
    with pytest.raises(ValueError, match=r"per-channel noise_std of 2 values .* 3 channel"):
        NoisyTimeShift(2, torch.tensor([1.0, 2.0]))(torch.randn(4, 3, 10))
    with pytest.raises(ValueError, match="no channel axis"):
        noise_filled_shift(torch.randn(4, 10), torch.zeros(4, dtype=torch.long), torch.ones(2))
    with pytest.raises(ValueError, match=r"\(B, L\) or \(B, C, L\)"):
        NoisyTimeShift(2, 0.4)(torch.randn(10))
    with pytest.raises(ValueError, match=r"\(B, L\) or \(B, C, L\)"):
        NoisyTimeShift(2, 0.4)(torch.randn(2, 2, 2, 10))
    with pytest.raises(ValueError, match="must be < L"):
        NoisyTimeShift(10, 0.4)(torch.randn(3, 10))
    with pytest.raises(ValueError, match="must be < L"):
        shift_views(DampedOscillator(), max_shift=200)
    with pytest.raises(ValueError, match="`max_shift` is 0"):
        shift_views(DampedOscillator(), max_shift=0)
    narrow = DampedOscillator()
    narrow.nuisance_low, narrow.nuisance_high = (0.0,), (narrow.dt / 4,)  # under one sample
    with pytest.raises(ValueError, match=r"`max_shift` is 0 .*DampedOscillator's is under one"):
        shift_views(narrow)
    assert resolve_pretrain_views(narrow, "auto") == "resimulated"  # "auto" does not pick them
    with pytest.raises(ValueError, match="max_shift"):
        NoisyTimeShift(-1, 0.4)
    with pytest.raises(ValueError, match="noise_std"):
        NoisyTimeShift(1, -0.1)
    with pytest.raises(ValueError, match="noise_std"):
        NoisyTimeShift(1, torch.tensor([0.1, float("nan")]))
    with pytest.raises(ValueError, match=r"shape \(\) or \(C,\)"):
        NoisyTimeShift(1, torch.ones(2, 2))
    with pytest.raises(TypeError, match="floating"):
        NoisyTimeShift(1, 0.4)(torch.ones(3, 10, dtype=torch.long))
    with pytest.raises(TypeError, match="generator"):
        NoisyTimeShift(1, 0.4, generator=0)


def test_non_signal_in_noise_tasks_are_refused_with_what_is_missing():
    with pytest.raises(TypeError, match=r"Lorenz96 does not qualify: it has no num_samples"):
        shift_views(Lorenz96())
    with pytest.raises(TypeError, match="noise_std, dt"):
        shift_views(object())

    class TwoShifts(DampedOscillator):
        nuisance_low = (-1.0, 0.0)
        nuisance_high = (1.0, 1.0)

    with pytest.raises(TypeError, match="2 dimensions, not one time shift"):
        default_max_shift(TwoShifts.__new__(TwoShifts))


def test_views_refuse_nan_before_training():
    with pytest.raises(ValueError, match="NaN"):
        AugmentedViews(NoisyTimeShift(2, 0.4))(torch.tensor([[0.0, float("nan"), 1.0]]))


# ------------------------------------------------------------------------------- budget
@settings(max_examples=200, deadline=None)
@given(total=st.integers(1, 10**7), fraction=st.floats(0, 1, exclude_max=True))
def test_split_budget_arithmetic(total, fraction):
    rows = min_rows()
    try:
        split = split_budget(total, fraction)
    except ValueError as error:
        assert "Raise `total` to at least" in str(error)
        views = 2 * round(total * fraction / 2)
        assert total - views < rows or (fraction > 0 and views < 2 * rows)
        return
    assert split.training + split.views == split.total == total
    assert split.views % 2 == 0 and split.view_pairs * 2 == split.views
    assert abs(split.views - fraction * total) <= 1
    assert split.training >= rows
    assert split.views == 0 if fraction == 0 else split.views >= 2 * rows


@settings(max_examples=50, deadline=None)
@given(fraction=st.floats(0.001, 0.999))
def test_split_budget_smallest_total_in_the_message_is_accepted(fraction):
    with pytest.raises(ValueError, match="Raise `total` to at least") as info:
        split_budget(2, fraction)
    smallest = int(str(info.value).split("at least ")[1].split(",")[0].rstrip("."))
    split_budget(smallest, fraction)
    with pytest.raises(ValueError):
        split_budget(smallest - 1, fraction)


def test_split_budget_examples_and_errors():
    assert split_budget(10_000, 0.0) == BudgetSplit(training=10_000, views=0, total=10_000)
    assert split_budget(10_001, 0.5) == BudgetSplit(training=5001, views=5000, total=10_001)
    assert split_budget(30, 0.0).training == 30
    with pytest.raises(ValueError, match="at least 30"):
        split_budget(29, 0.0)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        split_budget(1000, 1.0)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        split_budget(1000, -0.1)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        split_budget(1000, float("nan"))
    with pytest.raises(ValueError, match="total"):
        split_budget(0, 0.5)
    with pytest.raises(ValueError, match="view_fraction=0"):
        split_budget(1000, 0.01)  # 10 calls cannot make a usable view set
    with pytest.raises(ValueError, match="training \\+ views == total"):
        BudgetSplit(training=1, views=1, total=3)


# ------------------------------------------------------------------------------- benchmark
def test_view_cost_quick_run_counts_no_call_for_shift_views(tmp_path):
    script = load_script("view_cost")
    out = tmp_path / "view_cost.md"
    kinds = ["resimulated", "noise-filled shift"]
    rows = script.main(["--quick", "--kinds", *kinds, "--out", str(out)])
    calls = {r["views"]: r["pretraining_calls"] for r in rows}
    assert calls["noise-filled shift"] == 0 < calls["resimulated"]
    assert "--quick" in out.read_text()
