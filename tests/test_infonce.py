"""Identities of the symmetric InfoNCE loss."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sbi_symmetry.losses.infonce import symmetric_infonce


@st.composite
def embeddings(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, float]:
    batch = draw(st.integers(2, 9))
    width = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**31 - 1))
    temperature = draw(st.floats(0.05, 5.0))
    g = torch.Generator().manual_seed(seed)
    f_x = torch.randn(batch, width, generator=g, dtype=torch.float64)
    g_theta = torch.randn(batch, width, generator=g, dtype=torch.float64)
    return f_x, g_theta, temperature


def naive(f_x: torch.Tensor, g_theta: torch.Tensor, temperature: float) -> torch.Tensor:
    """Double loop over the batch, straight from the definition."""
    batch = f_x.shape[0]
    out = []
    for i in range(batch):
        row = [float(f_x[i] @ g_theta[j]) / temperature for j in range(batch)]
        col = [float(f_x[k] @ g_theta[i]) / temperature for k in range(batch)]
        pos = float(f_x[i] @ g_theta[i]) / temperature
        ce_row = -pos + math.log(sum(math.exp(v) for v in row))
        ce_col = -pos + math.log(sum(math.exp(v) for v in col))
        out.append(0.5 * (ce_row + ce_col))
    return torch.tensor(out, dtype=torch.float64)


@given(embeddings())
def test_matches_naive_double_loop(case):
    f_x, g_theta, temperature = case
    torch.testing.assert_close(symmetric_infonce(f_x, g_theta, temperature), naive(*case))


@given(embeddings(), st.integers(0, 2**31 - 1))
def test_invariant_to_permuting_the_pairs(case, seed):
    f_x, g_theta, temperature = case
    perm = torch.randperm(f_x.shape[0], generator=torch.Generator().manual_seed(seed))
    loss = symmetric_infonce(f_x, g_theta, temperature)
    permuted = symmetric_infonce(f_x[perm], g_theta[perm], temperature)
    torch.testing.assert_close(permuted, loss[perm])


@given(embeddings())
def test_symmetric_in_its_two_directions(case):
    f_x, g_theta, temperature = case
    torch.testing.assert_close(
        symmetric_infonce(f_x, g_theta, temperature), symmetric_infonce(g_theta, f_x, temperature)
    )


@given(st.integers(2, 50), st.integers(1, 5), st.floats(-3.0, 3.0), st.floats(0.05, 5.0))
def test_all_equal_embeddings_give_log_batch(batch, width, value, temperature):
    f_x = torch.full((batch, width), value, dtype=torch.float64)
    loss = symmetric_infonce(f_x, f_x.clone(), temperature)
    torch.testing.assert_close(loss, torch.full((batch,), math.log(batch), dtype=torch.float64))


def test_one_sided_terms_differ_but_mean_is_symmetric():
    # A non-symmetric logit matrix: the row and column terms differ, the loss averages them.
    f_x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    g_theta = torch.tensor([[2.0, 0.0], [0.5, 1.0], [0.0, -1.0]], dtype=torch.float64)
    logits = f_x @ g_theta.T
    rows = torch.logsumexp(logits, 1) - logits.diagonal()
    cols = torch.logsumexp(logits, 0) - logits.diagonal()
    assert not torch.allclose(rows, cols)
    torch.testing.assert_close(symmetric_infonce(f_x, g_theta), 0.5 * (rows + cols))


def test_learnable_temperature_gets_a_gradient():
    log_t = torch.zeros((), requires_grad=True)
    f_x, g_theta = torch.randn(6, 3), torch.randn(6, 3)
    symmetric_infonce(f_x, g_theta, log_t.exp()).mean().backward()
    assert log_t.grad is not None and torch.isfinite(log_t.grad)


def test_perfect_alignment_drives_the_loss_to_zero():
    f_x = torch.eye(4)
    assert float(symmetric_infonce(f_x, f_x, 0.01).max()) < 1e-6


@pytest.mark.parametrize(
    ("f_x", "g_theta", "temperature", "match"),
    [
        (torch.randn(4, 3), torch.randn(4, 2), 1.0, "same shape"),
        (torch.randn(4, 3), torch.randn(5, 3), 1.0, "same shape"),
        (torch.randn(4), torch.randn(4), 1.0, "2-D"),
        (torch.randn(2, 4, 3), torch.randn(2, 4, 3), 1.0, "2-D"),
        (torch.randn(1, 3), torch.randn(1, 3), 1.0, "at least 2"),
        (torch.randn(4, 3), torch.randn(4, 3), 0.0, "temperature"),
        (torch.randn(4, 3), torch.randn(4, 3), -1.0, "temperature"),
        (torch.randn(4, 3), torch.randn(4, 3), float("inf"), "temperature"),
        (torch.randn(4, 3), torch.randn(4, 3), torch.tensor([1.0, 2.0]), "scalar"),
        (torch.full((4, 3), float("nan")), torch.randn(4, 3), 1.0, "NaN"),
    ],
)
def test_bad_input_is_rejected(f_x, g_theta, temperature, match):
    with pytest.raises(ValueError, match=match):
        symmetric_infonce(f_x, g_theta, temperature)


def test_non_tensor_input_is_rejected():
    with pytest.raises(TypeError, match="f_x"):
        symmetric_infonce([[1.0]], torch.randn(1, 1))  # type: ignore[arg-type]
