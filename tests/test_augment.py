"""Views and data-space augmentations: shapes, shift semantics, composition, devices, errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sbi_symmetry.tasks import DampedOscillator
from sbi_symmetry.views import (
    AugmentedViews,
    CircularShift,
    Compose,
    ResimulatedViews,
    TimeShift,
    Views,
    apply_checked,
    circular_shift,
    time_shift,
)


def manual_time_shift(row: torch.Tensor, s: int) -> torch.Tensor:
    """Reference: shift one row (..., L) by s samples with zeros, written as a plain loop."""
    out = torch.zeros_like(row)
    length = row.shape[-1]
    for t in range(length):
        if 0 <= t - s < length:
            out[..., t] = row[..., t - s]
    return out


def find_shift(row_in, row_out, max_shift, fn):
    """All shifts s in [-max_shift, max_shift] with fn(row_in, s) == row_out."""
    return [s for s in range(-max_shift, max_shift + 1) if torch.equal(fn(row_in, s), row_out)]


def crop_last(x: torch.Tensor) -> torch.Tensor:
    return x[..., :-1]


# ------------------------------------------------------------------------------- functional
@given(st.lists(st.integers(-15, 15), min_size=1, max_size=6), st.integers(1, 3))
def test_time_shift_matches_manual_loop(shifts, channels):
    x = torch.randn(len(shifts), channels, 12, generator=torch.Generator().manual_seed(len(shifts)))
    out = time_shift(x, torch.tensor(shifts))
    for b, s in enumerate(shifts):
        assert torch.equal(out[b], manual_time_shift(x[b], s))
    out_2d = time_shift(x[:, 0], torch.tensor(shifts))
    assert torch.equal(out_2d, out[:, 0])


@given(st.lists(st.integers(-30, 30), min_size=1, max_size=6))
def test_circular_shift_matches_torch_roll(shifts):
    x = torch.randn(len(shifts), 2, 9, generator=torch.Generator().manual_seed(len(shifts)))
    out = circular_shift(x, torch.tensor(shifts))
    for b, s in enumerate(shifts):
        assert torch.equal(out[b], torch.roll(x[b], s, dims=-1))


def test_functional_shift_errors():
    x = torch.randn(3, 10)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        time_shift(x, torch.tensor([1, 2]))
    with pytest.raises(TypeError, match="integer"):
        circular_shift(x, torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match=r"\(B, L\) or \(B, C, L\)"):
        time_shift(torch.randn(10), torch.tensor([1]))


# ------------------------------------------------------------------------------- TimeShift
@pytest.mark.parametrize("shape", [(64, 40), (64, 3, 40)])
def test_time_shift_rows_are_zero_filled_shifts_within_range(shape):
    torch.manual_seed(5)
    x = torch.randn(*shape)
    out = TimeShift(4)(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    seen = set()
    for b in range(x.shape[0]):
        matches = find_shift(x[b], out[b], 4, manual_time_shift)
        assert len(matches) == 1  # the same shift for every channel of the row
        seen.add(matches[0])
    assert seen == set(range(-4, 5))  # 64 rows draw every allowed shift


def test_time_shift_same_shift_for_all_channels():
    torch.manual_seed(0)
    x = torch.randn(32, 4, 25)
    out = TimeShift(6)(x)
    for b in range(32):
        shifts = [find_shift(x[b, c], out[b, c], 6, manual_time_shift) for c in range(4)]
        assert all(s == shifts[0] and len(s) == 1 for s in shifts)


def test_time_shift_is_reproducible_under_seed_and_zero_is_identity():
    x = torch.randn(8, 30)
    torch.manual_seed(3)
    a = TimeShift(5)(x)
    torch.manual_seed(3)
    b = TimeShift(5)(x)
    assert torch.equal(a, b)
    assert torch.equal(TimeShift(0)(x), x)


def test_time_shift_bounds():
    with pytest.raises(ValueError, match="max_shift"):
        TimeShift(-1)
    with pytest.raises(ValueError, match="max_shift"):
        TimeShift(2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be < L"):
        TimeShift(10)(torch.randn(2, 10))
    with pytest.raises(ValueError, match="batch"):
        TimeShift(1)(torch.randn(10))


# ------------------------------------------------------------------------------- CircularShift
@pytest.mark.parametrize("shape", [(16, 11), (16, 2, 11)])
@pytest.mark.parametrize("max_shift", [None, 3])
def test_circular_shift_preserves_values_per_row(shape, max_shift):
    torch.manual_seed(1)
    x = torch.randn(*shape)
    out = CircularShift(max_shift)(x)
    assert out.shape == x.shape
    assert torch.equal(out.sort(-1).values, x.sort(-1).values)
    bound = shape[-1] - 1 if max_shift is None else max_shift
    for b in range(shape[0]):
        roll = lambda row, s: torch.roll(row, s, dims=-1)  # noqa: E731
        assert len(find_shift(x[b], out[b], bound, roll)) >= 1


def test_circular_shift_with_none_reaches_every_roll():
    torch.manual_seed(2)
    x = torch.arange(7.0).repeat(200, 1)
    out = CircularShift()(x)
    first = set(out[:, 0].tolist())  # the value now at position 0 identifies the roll
    assert first == set(range(7))


def test_circular_shift_bad_max_shift():
    with pytest.raises(ValueError, match="or None"):
        CircularShift(-2)


# ------------------------------------------------------------------------------- Compose
def test_compose_applies_in_order():
    x = torch.ones(2, 3)
    assert torch.equal(Compose(lambda v: 2 * v, lambda v: v + 1)(x), torch.full((2, 3), 3.0))
    assert torch.equal(Compose(lambda v: v + 1, lambda v: 2 * v)(x), torch.full((2, 3), 4.0))
    assert torch.equal(Compose()(x), x)


def test_compose_of_shifts_matches_sequential_application():
    x = torch.randn(10, 20)
    torch.manual_seed(4)
    composed = Compose(TimeShift(3), CircularShift(5))(x)
    torch.manual_seed(4)
    sequential = CircularShift(5)(TimeShift(3)(x))
    assert torch.equal(composed, sequential)
    assert "TimeShift(max_shift=3)" in repr(Compose(TimeShift(3), crop_last))


def test_shape_changing_augmentation_raises_naming_it():
    x = torch.randn(4, 10)
    with pytest.raises(ValueError, match=r"crop_last \(step 2 of 2 in Compose\).*\(4, 9\)"):
        Compose(TimeShift(1), crop_last)(x)
    with pytest.raises(ValueError, match="crop_last"):
        AugmentedViews(crop_last)(x)
    with pytest.raises(ValueError, match="<lambda>"):
        apply_checked(lambda v: v.sum(), x)
    with pytest.raises(ValueError, match="NoneType"):
        apply_checked(lambda v: None, x)  # type: ignore[arg-type, return-value]
    with pytest.raises(TypeError, match=r"augmentations\[1\]"):
        Compose(TimeShift(1), "not callable")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- devices
@pytest.mark.parametrize(
    "augmentation", [TimeShift(2), CircularShift(), CircularShift(3), Compose(TimeShift(1))]
)
def test_output_follows_input_device(augmentation):
    # The meta device has no data: any CPU tensor built inside the transform would clash with it.
    x = torch.empty(4, 2, 10, device="meta")
    assert augmentation(x).device.type == "meta"
    assert augmentation(torch.randn(4, 10)).device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_output_stays_on_gpu():
    x = torch.randn(4, 2, 10, device="cuda")
    for augmentation in (TimeShift(2), CircularShift()):
        assert augmentation(x).device == x.device


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int64])
def test_dtype_is_kept(dtype):
    x = torch.arange(20).reshape(2, 10).to(dtype)
    assert TimeShift(2)(x).dtype == dtype
    assert CircularShift()(x).dtype == dtype


# ------------------------------------------------------------------------------- AugmentedViews
def test_augmented_views_are_independent_draws():
    torch.manual_seed(0)
    x = torch.randn(16, 30)
    views = AugmentedViews(CircularShift())
    assert views.input_kind == "x" and isinstance(views, Views)
    x_a, x_b = views(x)
    assert x_a.shape == x_b.shape == x.shape
    assert not torch.equal(x_a, x_b)


def test_augmented_views_reject_bad_data():
    views = AugmentedViews(TimeShift(1))
    with pytest.raises(ValueError, match="NaN"):
        views(torch.tensor([[1.0, float("nan"), 2.0]]))
    with pytest.raises(TypeError, match="x"):
        views([[1.0, 2.0]])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="augmentation"):
        AugmentedViews(3)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- ResimulatedViews
def test_resimulated_views_of_damped_oscillator():
    torch.manual_seed(0)
    task = DampedOscillator()
    views = ResimulatedViews(task.simulate, task.nuisance_prior)
    assert views.input_kind == "theta" and isinstance(views, Views)
    theta = task.sample_prior(6)
    x_a, x_b = views(theta)
    assert x_a.shape == x_b.shape == (6, 200)
    assert x_a.dtype == torch.float32
    assert (x_a != x_b).all(dim=-1).all()  # every row differs (noise and nuisance)


def test_resimulated_views_draw_independent_nuisance_per_view():
    torch.manual_seed(0)
    task = DampedOscillator()
    seen: list[torch.Tensor] = []

    def recording_simulate(theta, nuisance):
        seen.append(nuisance)
        return task.signal(theta, nuisance)  # noise-free: the views differ by nuisance only

    theta = torch.tensor([[1.2, 0.2]]).repeat(50, 1)
    x_a, x_b = ResimulatedViews(recording_simulate, task.nuisance_prior)(theta)
    assert len(seen) == 2 and seen[0].shape == seen[1].shape == (50, 1)
    assert not torch.equal(seen[0], seen[1])
    assert ((seen[0] >= -4) & (seen[0] <= 4)).all()
    assert not torch.equal(x_a, x_b)


def test_resimulated_views_apply_augmentation_after_simulation():
    task = DampedOscillator()
    views = ResimulatedViews(task.simulate, task.nuisance_prior, augmentation=torch.zeros_like)
    x_a, x_b = views(task.sample_prior(3))
    assert torch.equal(x_a, torch.zeros(3, 200)) and torch.equal(x_b, torch.zeros(3, 200))
    with pytest.raises(ValueError, match="crop_last"):
        ResimulatedViews(task.simulate, task.nuisance_prior, augmentation=crop_last)(
            task.sample_prior(3)
        )


def test_resimulated_views_reject_nan_simulation():
    task = DampedOscillator()

    def nan_simulate(theta, nuisance):
        x = task.simulate(theta, nuisance)
        x[1, 5] = float("nan")
        return x

    with pytest.raises(ValueError, match=r"view a \(the first view\).*NaN.*rows \[1\]"):
        ResimulatedViews(nan_simulate, task.nuisance_prior)(task.sample_prior(4))


def test_resimulated_views_reject_wrong_shapes():
    task = DampedOscillator()
    theta = task.sample_prior(4)

    def drops_a_row(theta, nuisance):
        return task.simulate(theta, nuisance)[:-1]

    with pytest.raises(ValueError, match=r"view a.*\(3, 200\).*expected \(4, \.\.\.\)"):
        ResimulatedViews(drops_a_row, task.nuisance_prior)(theta)

    calls = []

    def changes_length(theta, nuisance):
        calls.append(1)
        x = task.simulate(theta, nuisance)
        return x if len(calls) == 1 else x[:, :100]

    with pytest.raises(ValueError, match="different shapes"):
        ResimulatedViews(changes_length, task.nuisance_prior)(theta)

    with pytest.raises(TypeError, match=r"view a.*expected a Tensor"):
        ResimulatedViews(lambda t, n: t.numpy(), task.nuisance_prior)(theta)


def test_resimulated_views_check_nuisance_prior_and_theta():
    task = DampedOscillator()
    scalar_prior = torch.distributions.Uniform(-4.0, 4.0)  # sample((n,)) is (n,), not (n, 1)
    with pytest.raises(ValueError, match=r"nuisance_prior.sample\(\(3,\)\).*\(3, k\)"):
        ResimulatedViews(task.simulate, scalar_prior)(task.sample_prior(3))
    with pytest.raises(TypeError, match="nuisance_prior"):
        ResimulatedViews(task.simulate, object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="simulate"):
        ResimulatedViews(None, task.nuisance_prior)  # type: ignore[arg-type]
    views = ResimulatedViews(task.simulate, task.nuisance_prior)
    with pytest.raises(ValueError, match=r"theta.*\(n, theta_dim\)"):
        views(torch.tensor([1.2, 0.2]))
