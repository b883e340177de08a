"""Report figures render from real inputs and save without pyplot."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from sbi_symmetry.evaluation import calibrate
from sbi_symmetry.workflow.plots import (
    plot_coverage,
    plot_loss_curves,
    plot_posteriors,
    plot_sbc_ranks,
)


class _Exact:
    def sample_batched(self, sample_shape, x, **_):
        return x / 2 + (0.5**0.5) * torch.randn(torch.Size(sample_shape).numel(), *x.shape)


def test_all_figures_render_and_save(tmp_path):
    ref = torch.randn(800, 2)
    fig = plot_posteriors(
        {"a": ref + 0.2, "b": ref * 1.1}, ref, labels=["x", "y"], truth=torch.zeros(2), title="t"
    )
    fig.savefig(tmp_path / "corner.png")
    prior = torch.distributions.MultivariateNormal(torch.zeros(2), torch.eye(2))
    thetas = prior.sample((120,))
    xs = thetas + torch.randn_like(thetas)
    res = calibrate(_Exact(), prior, thetas, xs, num_posterior_samples=100)
    plot_coverage({"exact": res}, labels=["x", "y"]).savefig(tmp_path / "cov.png")
    plot_sbc_ranks({"exact": res}, labels=["x", "y"]).savefig(tmp_path / "ranks.png")
    plot_loss_curves({"m": {"train": [3, 2, 1], "validation": [3.5, 2.5, 2]}}).savefig(
        tmp_path / "loss.png"
    )
    assert all((tmp_path / f).stat().st_size > 5_000 for f in ("corner.png", "cov.png"))
    assert plt.get_fignums() == []  # nothing left in pyplot's registry
