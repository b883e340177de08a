# %% [markdown]
# # Tutorial 2: is the posterior right? SBC, expected coverage, TARP and C2ST
#
# Two kinds of checks, both run on the sine-Gaussian pulse (`f0`, `tau`; arrival time
# `shift ~ U(-2, 2)` marginalised):
#
# * **calibration** needs no reference: over many `(theta, x)` pairs from the prior, credible
#   intervals must contain the truth as often as they claim (SBC ranks, expected coverage, TARP);
# * **accuracy** compares with a reference posterior of the *same* model: `bilby` + `dynesty`
#   nested sampling with the shift as a free parameter, and an exact quadrature that sums the
#   shift out. C2ST tells the samples apart with a classifier: 0.5 means indistinguishable.

# %%
import os

import torch
from sbi.diagnostics import check_sbc, check_tarp, run_sbc, run_tarp

from sbi_symmetry import ConvEncoder1D, SineGaussian
from sbi_symmetry.evaluation import c2st_score, calibrate
from sbi_symmetry.workflow import methods
from sbi_symmetry.workflow.plots import plot_coverage, plot_posteriors, plot_sbc_ranks

FAST = bool(os.environ.get("SBI_SYMMETRY_FAST"))
torch.manual_seed(1)
task = SineGaussian()
num = 2_000 if FAST else 10_000
theta, x = task.sample_joint(num)
encoder = ConvEncoder1D(
    input_length=task.num_samples, output_dim=3, channels=8, num_blocks=2, kernel_size=9
)

# %% [markdown]
# Train the symmetry-embedding NPE and sbi's NPE on the raw data from the same simulations
# (`sbi_symmetry.workflow.methods` wraps the sbi calls of tutorial 1).

# %%
epochs = {"max_num_epochs": 5 if FAST else 200}
sym = methods.symmetry_npe(
    task,
    theta,
    x,
    encoder,
    pretrain_views="shift",  # views of the training set: no simulator call (the default, "auto")
    pretrain_kwargs={"max_epochs": 3 if FAST else 40, "learning_rate": 2e-3},
    show_progress_bars=False,
    **epochs,
)
raw = methods.raw_npe(task, theta, x, show_progress_bars=False, **epochs)
for m in (sym, raw):
    print(
        f"{m.name}: {m.trainable_parameters:,} trainable parameters, "
        f"{m.macs_per_1000:.2e} MACs per forward pass at batch 1000"
    )

# %% [markdown]
# ## Calibration with sbi's diagnostics
#
# `run_sbc` / `check_sbc` and `run_tarp` / `check_tarp` take our posteriors as they are.

# %%
theta_t, x_t = task.sample_joint(100 if FAST else 500)
ranks, dap = run_sbc(
    theta_t, x_t, sym.posterior, num_posterior_samples=200, show_progress_bar=False
)
print(
    "SBC KS p-values:",
    check_sbc(ranks, task.prior.sample((len(theta_t),)), dap, 200)["ks_pvals"].numpy().round(3),
)
ecp, alpha = run_tarp(
    theta_t, x_t, sym.posterior, num_posterior_samples=200, show_progress_bar=False
)
atc, ks = check_tarp(ecp, alpha)
print(f"TARP: area to curve {atc:+.3f} (0 ideal), KS p-value {ks:.3f}")

# %% [markdown]
# `sbi_symmetry.evaluation.calibrate` runs the same sbi functions on one set of posterior
# samples and adds the expected coverage of central credible intervals (the paper's Fig. 4).

# %%
cal = {
    m.name: calibrate(m.posterior, task.prior, theta_t, x_t, num_posterior_samples=200)
    for m in (sym, raw)
}
for name, result in cal.items():
    print(
        f"{name}: calibrated={result.is_calibrated()}, max coverage error "
        f"{result.max_coverage_error():.3f}"
    )
fig_coverage = plot_coverage(cal, labels=task.parameter_labels)
fig_ranks = plot_sbc_ranks(cal, labels=task.parameter_labels)

# %% [markdown]
# ## Accuracy against nested sampling and the exact quadrature
#
# Calibration alone cannot tell a wide-but-honest posterior from a sharp one. For one
# observation we compute both references; they agree with each other (the tests check this on
# several observations), and each method is scored against them.

# %%
theta_o, shift_o = torch.tensor([[0.45, 2.5]]), torch.tensor([[0.4]])
x_o = task.simulate(theta_o, shift_o)
quad = task.reference_posterior(x_o, num_samples=2_000)
nested = task.reference_posterior(
    x_o, num_samples=1_000, method="dynesty", nlive=200 if FAST else 500
)
print(f"quadrature: log Z = {quad.log_evidence:.2f} in {quad.wall_time_s:.1f} s")
print(
    f"dynesty:    log Z = {nested.log_evidence:.2f} ± {nested.log_evidence_error:.2f} in "
    f"{nested.wall_time_s:.1f} s ({nested.num_likelihood_evaluations} likelihood calls)"
)
independent = nested.settings["independent_samples"]
print(f"C2ST dynesty vs quadrature: {c2st_score(nested.samples[:independent], quad.samples):.3f}")
for m in (sym, raw):
    s = m.sample(x_o, 2_000)
    print(f"C2ST {m.name} vs quadrature: {c2st_score(s, quad.samples):.3f}")
fig_refs = plot_posteriors(
    {"symmetry NPE": sym.sample(x_o, 2_000), "dynesty": nested.samples},
    quad.samples,
    labels=task.parameter_labels,
    truth=theta_o[0],
)

# %% [markdown]
# Dynesty returns weighted samples; `reference_posterior` resamples them, and when more samples
# are asked for than it has independent ones there are repeats, which a classifier can spot.
# Use at most `settings["independent_samples"]` of them for C2ST (as above), or the quadrature.
