# %% [markdown]
# # Tutorial 3: Embed and Emulate on the two-scale Lorenz-96 system
#
# Embed and Emulate (Jiang, Lu & Willett) learns an encoder `f(x)` and an emulator `g(theta)`
# into one latent space, with `log r(theta, x) = <f(x), g(theta)> / temperature` trained by a
# symmetric InfoNCE loss over all pairs of a batch. In sbi terms it is a ratio estimator, so it
# plugs into sbi's NRE machinery: MCMC, rejection, importance sampling, VI and the diagnostics
# all work on it. Because `g(theta)` is a small MLP and each observation is encoded once, its
# posterior samples without MCMC.
#
# Lorenz-96 has two symmetries: it is stationary in time (we observe a random window) and
# equivariant under a cyclic shift of the sites. The observation is 16 snapshots of the 36 slow
# variables; a circular-padded, mean-pooled `ConvEncoder1D` over the sites is invariant to the
# site shift by construction.

# %%
import os

import torch
from sbi.analysis import sbc_rank_plot
from sbi.diagnostics import check_sbc, check_tarp, run_sbc, run_tarp

from sbi_symmetry import ConvEncoder1D, EmbedEmulate, Lorenz96

FAST = bool(os.environ.get("SBI_SYMMETRY_FAST"))
torch.manual_seed(2)
task = Lorenz96()
print(
    "parameters:",
    task.parameter_names,
    " data shape:",
    task.x_shape,
    " nuisance:",
    task.nuisance_names,
)
num = 1_000 if FAST else 10_000
theta, x = task.sample_joint(num)

# %% [markdown]
# ## Train
#
# The encoder is invariant to the site shift by construction (circular padding, mean pooling
# over sites). The time window it has to learn to ignore from the data. `EmbedEmulate` can also
# push it there explicitly: `views=task.views, symmetry_weight=0.1` adds a VICReg term on the
# encoder for two re-simulations of each batch's `theta` with a new window and site shift. That
# re-simulates Lorenz-96 twice per batch, which costs more than the training step itself, and on
# the damped oscillator and sine-Gaussian it did not improve C2ST
# (`benchmarks/results/embed_emulate.md`), so it stays off here.

# %%
channels, sites = task.x_shape
encoder = ConvEncoder1D(
    input_length=sites,
    in_channels=channels,
    output_dim=16,
    channels=16,
    num_blocks=2,
    kernel_size=5,
    padding_mode="circular",
)
# a larger emulator than the default (as the `fast` preset has): 128 wide, 3 residual blocks
trainer = EmbedEmulate(
    task.prior,
    encoder=encoder,
    emulator_kwargs={"hidden_dim": 128, "num_blocks": 3},
    show_progress_bars=False,
)
# early stopping (20 epochs without improvement) ends it well before the cap; then `train`
# spends a few seconds on the emulator alone, the encoder frozen, with the x -> theta half of
# the loss (`refine_emulator=False` skips it)
estimator = trainer.append_simulations(theta, x).train(max_num_epochs=3 if FAST else 600)
print(
    "epochs:",
    trainer.summary["epochs_trained"][-1],
    " best validation loss:",
    round(trainer.summary["best_validation_loss"][-1], 3),
)
refined = trainer.refinement
print(
    f"emulator refined for {refined.epochs} epochs in {refined.seconds:.0f} s: validation "
    f"x -> theta loss {refined.initial_validation_loss:.3f} -> {refined.best_validation_loss:.3f}"
)

# %% [markdown]
# ## Sample with the two towers
#
# `trainer.build_posterior()` returns a `TwoTowerPosterior`: it encodes `x_o` once, and since
# `log r(theta, x_o) = <f(x_o), g(theta)> / T` is then a matrix product over as many `theta` as
# memory holds, it samples without MCMC, by exact rejection from the prior (the cosine
# similarity bounds the ratio) or, for sharp posteriors, by adaptive importance sampling. It
# says which it used and, when weighted, the effective sample size. Ratio posteriors need `x_o`
# with its batch dimension: shape `(1, 16, 36)`. (`build_posterior(sample_with="mcmc")` gives
# sbi's MCMC posterior instead.)

# %%
posterior = trainer.build_posterior()
theta_o = task.prior.sample((1,))
x_o = task.simulate(theta_o)
samples = posterior.sample((500 if FAST else 5_000,), x=x_o)
method, ess = posterior.last_method[0], float(posterior.last_ess[0])
print(f"sampler: {method}, effective sample size: {ess:,.0f}")
prior_var = task.prior.sample((20_000,)).var(0)
contraction = 1 - samples.var(0) / prior_var
for name, t, m, c in zip(
    task.parameter_names, theta_o[0], samples.mean(0), contraction, strict=True
):
    print(f"{name}: true {t:.2f}, posterior mean {m:.2f}, contraction {c:.2f}")

# %% [markdown]
# ## Calibration
#
# No tractable likelihood here, so no reference posterior: calibration and contraction are the
# checks. `run_sbc` and `run_tarp` call the posterior's `sample_batched`, which encodes all
# observations at once and samples each from the same product.

# %%
theta_t, x_t = task.sample_joint(30 if FAST else 200)
ranks, dap = run_sbc(theta_t, x_t, posterior, num_posterior_samples=100, show_progress_bar=False)
pvals = check_sbc(ranks, task.prior.sample((len(theta_t),)), dap, 100)["ks_pvals"]
print("SBC KS p-values:", pvals.numpy().round(3))
level = 0.05 / len(pvals)  # Bonferroni over the parameters
failed = [n for n, p in zip(task.parameter_names, pvals, strict=True) if p < level]
print(
    f"SBC fails (p < {level:.4f}) for {', '.join(failed)}: the ranks of that parameter are not "
    "uniform, so its posterior is miscalibrated (the rank histograms below show how: a U shape "
    "is too narrow, a hump too wide, a slope biased)"
    if failed
    else f"SBC passes for every parameter (all p >= {level:.4f})"
)
ecp, alpha = run_tarp(theta_t, x_t, posterior, num_posterior_samples=100, show_progress_bar=False)
print("TARP (area to curve, KS p): {:+.3f}, {:.3f}".format(*check_tarp(ecp, alpha)))
fig_ranks, _ = sbc_rank_plot(
    ranks, 100, num_bins=10, plot_type="hist", parameter_labels=list(task.parameter_names)
)

# %% [markdown]
# SBC looks at the whole prior, so it catches what one observation cannot: a parameter whose
# ranks pile up on one side is biased, a U shape is overconfident, a hump too cautious. When a
# parameter fails, train to convergence first (the epoch count above should be below the cap),
# then add simulations. Check the sampler too: after `sample_batched`, `posterior.last_method`
# and `posterior.last_ess` say per observation whether it drew exactly (rejection), by
# resampling weighted candidates (importance, with the candidates' effective sample size) or fell
# back to MCMC.
