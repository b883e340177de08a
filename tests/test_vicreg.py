"""VICReg loss: the maths of each term, its symmetries and its input checks."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sbi_symmetry.losses.vicreg import (
    MIN_BATCH_SIZE,
    VICRegLoss,
    VICRegTerms,
    covariance_term,
    variance_term,
    vicreg_loss,
)


def random_batch(seed: int, batch: int, dim: int, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(batch, dim, generator=g, dtype=torch.float64)


def whitened_batch(seed: int, batch: int, dim: int) -> torch.Tensor:
    """A batch whose unbiased batch covariance is exactly the identity (up to rounding)."""
    z = random_batch(seed, batch, dim)
    z = z - z.mean(0)
    q, _ = torch.linalg.qr(z)  # orthonormal columns, each orthogonal to the ones vector
    return math.sqrt(batch - 1) * q


def per_sample_covariance(z: torch.Tensor) -> torch.Tensor:
    """The defect of the original code: an outer product per sample, averaged over samples."""
    dim = z.shape[1]
    outer = z.unsqueeze(2) * z.unsqueeze(1)  # (B, D, D)
    off = outer - torch.diag_embed(torch.diagonal(outer, dim1=1, dim2=2))
    return (off.pow(2).sum((1, 2)) / dim).mean()


# ------------------------------------------------------------------------------- invariance
@given(st.integers(0, 10_000), st.integers(3, 40), st.integers(1, 8))
def test_identical_views_have_zero_invariance(seed, batch, dim):
    z = random_batch(seed, batch, dim)
    terms = vicreg_loss(z, z.clone())
    assert terms.invariance == 0.0


def test_invariance_is_mean_squared_error():
    z_a = torch.zeros(4, 2)
    z_b = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    assert vicreg_loss(z_a, z_b).invariance.item() == pytest.approx((1 + 4) / 8)


# ------------------------------------------------------------------------------- variance
@given(st.integers(0, 10_000), st.integers(3, 40), st.integers(1, 8))
def test_variance_term_zero_when_every_std_reaches_gamma(seed, batch, dim):
    z = random_batch(seed, batch, dim)
    z = z / z.std(0) * 1.5  # every dimension has std exactly 1.5 > gamma = 1
    assert vicreg_loss(z, z).variance == 0.0
    assert variance_term(z, gamma=1.5, eps=1e-12) < 1e-6


@given(st.integers(0, 10_000), st.integers(3, 40), st.integers(1, 8), st.integers(0, 7))
def test_variance_term_positive_when_one_std_is_below_gamma(seed, batch, dim, which):
    z = random_batch(seed, batch, dim)
    z = z / z.std(0) * 1.5
    z[:, which % dim] *= 0.1  # std 0.15 < 1
    v = vicreg_loss(z, z).variance
    assert v == pytest.approx(2 * (1 - math.sqrt(0.15**2 + 1e-4)) / dim)


def test_variance_term_hand_computed():
    # column 0 is constant (std sqrt(eps) = 0.01), column 1 has unbiased variance 1
    z = torch.tensor([[0.0, 1.0], [0.0, 0.0], [0.0, -1.0]])
    expected_one_view = (1 - 0.01) / 2  # mean over the two dimensions of the hinge
    assert variance_term(z).item() == pytest.approx(expected_one_view)
    assert vicreg_loss(z, z).variance.item() == pytest.approx(2 * expected_one_view)


# ------------------------------------------------------------------------------- covariance
@given(st.integers(0, 10_000), st.integers(2, 6), st.integers(0, 30))
def test_covariance_term_zero_for_whitened_batch(seed, dim, extra):
    z = whitened_batch(seed, dim + 1 + extra, dim)
    assert torch.allclose(torch.cov(z.T), torch.eye(dim, dtype=z.dtype), atol=1e-10)
    assert covariance_term(z) < 1e-20
    assert vicreg_loss(z, z).covariance < 1e-20
    # The per-sample covariance of the original code is far from zero on the same batch, so an
    # implementation with that defect fails the assertions above.
    assert per_sample_covariance(z) > 0.01


def test_covariance_term_hand_computed():
    # Centred already; unbiased covariance [[1, .5], [.5, 1]]; off-diagonal squares 2 * .25,
    # divided by D = 2 gives 0.25 per view.
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)
    assert covariance_term(z).item() == pytest.approx(0.25)
    terms = vicreg_loss(z, z)
    assert terms.covariance.item() == pytest.approx(0.5)
    assert terms.variance.item() == 0.0  # both stds are sqrt(1 + eps) >= 1
    assert terms.total.item() == pytest.approx(0.5)
    # The per-sample version gives a different number here (only row 3 has a non-zero product):
    assert per_sample_covariance(z).item() == pytest.approx(1 / 3)


def test_covariance_uses_the_batch_mean():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)
    assert covariance_term(z + torch.tensor([5.0, -3.0], dtype=z.dtype)).item() == pytest.approx(
        0.25
    )


def test_single_dimension_has_no_covariance():
    z = random_batch(0, 10, 1)
    assert vicreg_loss(z, 2 * z).covariance == 0.0


# ------------------------------------------------------------------------------- symmetries
@given(st.integers(0, 10_000), st.integers(3, 30), st.integers(1, 6))
def test_invariant_under_permuting_rows(seed, batch, dim):
    z_a, z_b = random_batch(seed, batch, dim), random_batch(seed + 1, batch, dim, scale=0.7)
    perm = torch.randperm(batch, generator=torch.Generator().manual_seed(seed))
    base, permuted = vicreg_loss(z_a, z_b), vicreg_loss(z_a[perm], z_b[perm])
    for name in ("total", "invariance", "variance", "covariance"):
        assert torch.allclose(getattr(base, name), getattr(permuted, name), atol=1e-12)


@given(st.integers(0, 10_000), st.integers(3, 30), st.integers(1, 6))
def test_invariant_under_swapping_views(seed, batch, dim):
    z_a, z_b = random_batch(seed, batch, dim), random_batch(seed + 1, batch, dim, scale=0.7)
    ab, ba = vicreg_loss(z_a, z_b), vicreg_loss(z_b, z_a)
    for name in ("total", "invariance", "variance", "covariance"):
        assert torch.allclose(getattr(ab, name), getattr(ba, name), atol=1e-12)


# ------------------------------------------------------------------------------- weights
@given(
    st.floats(0, 50),
    st.floats(0, 50),
    st.floats(0, 50),
    st.integers(0, 10_000),
)
def test_total_is_the_weighted_sum_of_the_raw_terms(lam, mu, nu, seed):
    z_a, z_b = random_batch(seed, 12, 4, scale=0.5), random_batch(seed + 1, 12, 4)
    terms = vicreg_loss(z_a, z_b, invariance_weight=lam, variance_weight=mu, covariance_weight=nu)
    raw = vicreg_loss(z_a, z_b)
    assert torch.allclose(terms.invariance, raw.invariance)
    expected = lam * raw.invariance + mu * raw.variance + nu * raw.covariance
    assert torch.allclose(terms.total, expected)


def test_default_weights_are_bardes_et_al():
    z_a, z_b = random_batch(0, 16, 3, scale=0.3), random_batch(1, 16, 3)
    t = vicreg_loss(z_a, z_b)
    assert torch.allclose(t.total, 25 * t.invariance + 25 * t.variance + 1 * t.covariance)


def test_module_matches_function_and_returns_terms():
    z_a, z_b = random_batch(0, 16, 3), random_batch(1, 16, 3)
    loss = VICRegLoss(invariance_weight=2.0, variance_weight=3.0, covariance_weight=0.5, gamma=0.8)
    out = loss(z_a, z_b)
    ref = vicreg_loss(
        z_a, z_b, invariance_weight=2.0, variance_weight=3.0, covariance_weight=0.5, gamma=0.8
    )
    assert isinstance(out, VICRegTerms)
    assert torch.equal(out.total, ref.total)
    assert set(out.as_floats()) == {"total", "invariance", "variance", "covariance"}
    assert "gamma=0.8" in repr(loss)


def test_gradients_flow_and_terms_are_scalars():
    z_a = random_batch(0, 8, 3).requires_grad_()
    z_b = random_batch(1, 8, 3).requires_grad_()
    terms = vicreg_loss(z_a, z_b)
    assert all(t.shape == () for t in (terms.total, terms.variance, terms.covariance))
    terms.total.backward()
    assert z_a.grad is not None and torch.isfinite(z_a.grad).all()
    assert isinstance(terms.as_floats()["total"], float)


def test_constant_batch_has_finite_gradient():
    z = torch.ones(8, 3, requires_grad=True)
    vicreg_loss(z, z.detach() + 0.0).total.backward()
    assert torch.isfinite(z.grad).all()


# ------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("batch", [1, 2])
def test_too_small_batch_raises(batch):
    assert MIN_BATCH_SIZE == 3
    z = torch.randn(batch, 4)
    with pytest.raises(ValueError, match="at least 3"):
        vicreg_loss(z, z)


@pytest.mark.parametrize(
    ("z_a", "z_b", "match"),
    [
        (torch.randn(8, 3), torch.randn(8, 4), "same shape"),
        (torch.randn(8, 3), torch.randn(9, 3), "same shape"),
        (torch.randn(8), torch.randn(8), "z_a.*matrix"),
        (torch.randn(8, 3), torch.randn(8, 3, 1), "z_b.*matrix"),
        (torch.full((8, 3), float("nan")), torch.randn(8, 3), "z_a.*NaN"),
        (torch.randn(8, 3), torch.full((8, 3), float("inf")), "z_b.*NaN/inf.*network outputs"),
    ],
)
def test_bad_inputs_raise(z_a, z_b, match):
    with pytest.raises(ValueError, match=match):
        vicreg_loss(z_a, z_b)


def test_non_tensor_and_integer_inputs_raise():
    with pytest.raises(TypeError, match="z_a"):
        vicreg_loss([[1.0, 2.0]] * 4, torch.randn(4, 2))
    with pytest.raises(TypeError, match="floating point"):
        vicreg_loss(torch.ones(4, 2, dtype=torch.long), torch.ones(4, 2, dtype=torch.long))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"invariance_weight": -1.0}, "invariance_weight"),
        ({"variance_weight": float("nan")}, "variance_weight"),
        ({"covariance_weight": float("inf")}, "covariance_weight"),
        ({"gamma": 0.0}, "gamma"),
        ({"eps": -1e-4}, "eps"),
    ],
)
def test_bad_settings_raise(kwargs, match):
    z = torch.randn(8, 3)
    with pytest.raises(ValueError, match=match):
        vicreg_loss(z, z, **kwargs)
    with pytest.raises(ValueError, match=match):
        VICRegLoss(**kwargs)(z, z)
