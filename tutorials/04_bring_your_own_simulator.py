# %% [markdown]
# # Tutorial 4: your own simulator with a nuisance symmetry
#
# Nothing in `sbi_symmetry` depends on the built-in tasks. All it needs is
#
# * an sbi prior over the parameters you want, `theta`;
# * a torch distribution over the nuisance (sampled with `.sample((n,))` -> `(n, k)`);
# * `simulate(theta, nuisance) -> x`, vectorised over rows.
#
# Our example: a pulsar-like light curve folded on its period, 64 phase bins, with a Gaussian
# pulse of width `w` and amplitude `a` at an unknown *phase* (a cyclic position), plus white noise.
# We want `(w, a)`; the phase is a nuisance that rotates the data cyclically.

# %%
import os

import torch
from sbi.inference import NPE
from sbi.utils import BoxUniform

from sbi_symmetry import (
    AugmentedViews,
    CircularShift,
    ConvEncoder1D,
    NullTracker,
    ResimulatedViews,
    invariance_error,
    pretrain_vicreg,
)

FAST = bool(os.environ.get("SBI_SYMMETRY_FAST"))
torch.manual_seed(3)
BINS = 64
phase_grid = torch.arange(BINS) / BINS

prior = BoxUniform(torch.tensor([0.02, 0.5]), torch.tensor([0.15, 2.0]))  # w, a
nuisance_prior = BoxUniform(torch.zeros(1), torch.ones(1))  # pulse phase in [0, 1)


def simulate(theta: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """Folded light curve: a wrapped Gaussian pulse plus noise, shape (n, BINS)."""
    w, a = theta[:, :1], theta[:, 1:2]
    d = (phase_grid - phase + 0.5) % 1.0 - 0.5  # cyclic distance to the pulse centre
    return a * torch.exp(-0.5 * (d / w) ** 2) + 0.3 * torch.randn(len(theta), BINS)


theta = prior.sample((3,))
print(simulate(theta, nuisance_prior.sample((3,))).shape)

# %% [markdown]
# ## Views from the simulator
#
# `ResimulatedViews` checks what your simulator returns: the right number of rows, finite
# values, the same shape for both views. Errors name the problem before any training.

# %%
views = ResimulatedViews(simulate, nuisance_prior)


def broken_simulate(theta: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """A simulator that fails for wide pulses (returns NaN), as real codes sometimes do."""
    x = simulate(theta, phase)
    return x.masked_fill(theta[:, :1] > 0.1, float("nan"))


try:
    ResimulatedViews(broken_simulate, nuisance_prior)(prior.sample((8,)))
except ValueError as err:
    print("caught:", err)

# %% [markdown]
# The phase acts cyclically, so the encoder pads circularly and pools over the whole ring:
# a rotation of the input only rotates its feature maps, and the pooled summary is invariant.

# %%
encoder = ConvEncoder1D(
    input_length=BINS,
    output_dim=2,
    channels=8,
    num_blocks=2,
    kernel_size=7,
    padding_mode="circular",
)
embedding = pretrain_vicreg(
    encoder,
    views,
    prior,
    num_simulations=2_000 if FAST else 20_000,
    max_epochs=3 if FAST else 30,
    learning_rate=2e-3,
    show_progress_bar=False,
)
print(f"invariance error: {invariance_error(embedding, views, prior.sample((1000,))):.3f}")

# %% [markdown]
# ## Only stored data? Augment them instead
#
# Without a simulator at hand (archival data), views can come from data-space augmentations
# of the stored examples: here a random cyclic roll, which is exactly the symmetry.

# %%
stored_x = simulate(prior.sample((2_000,)), nuisance_prior.sample((2_000,)))
augmented = AugmentedViews(CircularShift())
embedding_from_data = pretrain_vicreg(
    ConvEncoder1D(
        input_length=BINS,
        output_dim=2,
        channels=8,
        num_blocks=2,
        kernel_size=7,
        padding_mode="circular",
    ),
    augmented,
    x=stored_x,
    max_epochs=3 if FAST else 30,
    learning_rate=2e-3,
    show_progress_bar=False,
)
print(
    "pretrained on",
    len(stored_x),
    "stored curves; summary of one:",
    embedding_from_data(stored_x[:1]).detach().numpy().round(2),
)

# %% [markdown]
# ## NPE on the embedding

# %%
theta = prior.sample((2_000 if FAST else 10_000,))
x = simulate(theta, nuisance_prior.sample((len(theta),)))
npe = NPE(
    prior,
    density_estimator=embedding.posterior_nn("maf"),
    tracker=NullTracker(),
    show_progress_bars=False,
)
npe.append_simulations(theta, x).train(max_num_epochs=5 if FAST else 200)
posterior = npe.build_posterior()
theta_o = torch.tensor([[0.06, 1.2]])
x_o = simulate(theta_o, torch.tensor([[0.8]]))
samples = posterior.sample((2_000,), x=x_o, show_progress_bars=False)
print(
    "truth:",
    theta_o[0].numpy(),
    " posterior mean:",
    samples.mean(0).numpy().round(3),
    " std:",
    samples.std(0).numpy().round(3),
)
