"""``product_estimator``: several two-tower estimators as one, their log-ratios averaged."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sbi.utils import BoxUniform
from torch import nn

from sbi_symmetry.emulate import (
    EmbedEmulateRatioEstimator,
    build_two_tower_posterior,
    product_estimator,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _member(seed: int, similarity: str = "cosine", width: int = 4) -> EmbedEmulateRatioEstimator:
    torch.manual_seed(seed)
    theta, x = torch.randn(30, 2), torch.randn(30, 3)
    est = EmbedEmulateRatioEstimator(
        nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, width)),
        nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, width)),
        theta,
        x,
        similarity=similarity,
        temperature=0.05 + 0.1 * seed,
    )
    return est.eval()


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.sampled_from(["cosine", "scaled", "dot"]), min_size=2, max_size=4),
    st.integers(0, 1000),
)
def test_its_log_ratio_is_the_weighted_mean_of_the_members(similarities, seed):
    members = [_member(k, s, width=3 + k) for k, s in enumerate(similarities)]
    raw = torch.rand(len(members), generator=torch.Generator().manual_seed(seed)) + 0.1
    weights = (raw / raw.sum()).tolist()
    weights[-1] = 1 - sum(weights[:-1])
    product = product_estimator(members, weights)
    gen = torch.Generator().manual_seed(seed)
    theta, x = torch.randn(7, 2, generator=gen), torch.randn(7, 3, generator=gen)
    with torch.no_grad():
        want = sum(
            w * m.unnormalized_log_ratio(theta, x) for w, m in zip(weights, members, strict=True)
        )
        got = product.unnormalized_log_ratio(theta, x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    unit = "dot" not in similarities
    assert product.similarity == ("scaled" if unit else "dot")
    if unit:  # unit-norm parameter embeddings: |f(x)| bounds log r, as the rejection sampler needs
        with torch.no_grad():
            assert torch.allclose(product.emulate(theta).norm(dim=-1), torch.ones(7), atol=1e-5)
            assert bool((got <= product.encode(x).norm(dim=-1) + 1e-5).all())


def test_a_product_of_one_member_with_itself_is_that_member():
    member = _member(2)  # temperature 0.25: rejection from the prior accepts often enough
    prior = BoxUniform(-3 * torch.ones(2), 3 * torch.ones(2))
    x_o = torch.randn(1, 3, generator=torch.Generator().manual_seed(1))
    theta = prior.sample((50,))
    single = build_two_tower_posterior(member, prior).log_prob(theta, x=x_o)
    twice = build_two_tower_posterior(product_estimator([member, member]), prior)
    torch.testing.assert_close(twice.log_prob(theta, x=x_o), single, rtol=1e-5, atol=1e-4)
    exact = build_two_tower_posterior(
        product_estimator([member, member]), prior, method="rejection"
    )
    torch.manual_seed(0)
    samples = exact.sample((300,), x=x_o, show_progress_bars=False)  # "scaled": exact rejection
    assert samples.shape == (300, 2) and exact.last_method == ["rejection"]


def test_bad_members_and_weights_are_refused():
    one, other = _member(0), _member(1)
    with pytest.raises(ValueError, match="two or more"):
        product_estimator([one])
    with pytest.raises(ValueError, match="two or more"):
        product_estimator([one, nn.Linear(2, 2)])
    with pytest.raises(ValueError, match="weights"):
        product_estimator([one, other], weights=[0.5, 0.6])
    with pytest.raises(ValueError, match="weights"):
        product_estimator([one, other], weights=[1.0])
    with pytest.raises(ValueError, match="weights"):  # NaN fails every comparison
        product_estimator([one, other], weights=[float("nan"), 1.0])
    torch.manual_seed(0)
    wide = EmbedEmulateRatioEstimator(
        nn.Linear(5, 4), nn.Linear(2, 4), torch.randn(10, 2), torch.randn(10, 5)
    )
    with pytest.raises(ValueError, match="shapes"):
        product_estimator([one, wide])
