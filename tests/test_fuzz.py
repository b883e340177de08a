"""Fuzzing the public entry points: bad shapes, dtypes and values fail with a named
``ValueError``/``TypeError`` before any training; whatever is accepted trains."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sbi.utils import BoxUniform

from sbi_symmetry._sbi_compat import training_summary
from sbi_symmetry.emulate import EmbedEmulate
from sbi_symmetry.nets.conv import ConvEncoder1D
from sbi_symmetry.nets.mlp import ResidualMLP
from sbi_symmetry.symmetry.embedding import SymmetryEmbedding

PRIOR = BoxUniform(-torch.ones(2), torch.ones(2))
NAMED = (ValueError, TypeError)
WORDS = ("`theta`", "`x`", "invalid simulations", "validation_fraction")  # sbi's own: the 3rd
FUZZ = settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)


@st.composite
def batches(draw):
    rows = draw(st.sampled_from([40, 3, 1, 0]))
    theta_dim = draw(st.sampled_from([2, 1, 3]))
    x_tail = draw(st.sampled_from([(4,), (2, 4), ()]))
    dtype = draw(st.sampled_from([torch.float32, torch.float64, torch.int64, torch.bool]))
    theta = torch.rand(rows, theta_dim, generator=torch.Generator().manual_seed(rows)) * 2 - 1
    x = torch.randn(rows, *x_tail, generator=torch.Generator().manual_seed(1)).to(dtype)
    poison = draw(st.sampled_from([None, "x", "theta"]))
    bad = draw(st.sampled_from([float("nan"), float("inf")]))
    if poison == "theta" and rows:
        theta[0, 0] = bad
    if poison == "x" and rows and dtype.is_floating_point:
        x.view(rows, -1)[0, 0] = bad
    kind = draw(st.sampled_from(["tensor", "tensor", "numpy", "flat theta"]))
    if kind == "numpy":
        return theta.numpy(), x.numpy()
    if kind == "flat theta":
        theta = theta[:, 0]  # one dimension too few
    return theta, x


@FUZZ
@given(batch=batches())
def test_embed_emulate_refuses_bad_simulations_before_training(batch):
    torch.manual_seed(0)
    theta, x = batch
    width = int(np.prod(x.shape[1:])) if x.ndim > 1 else 1
    trainer = EmbedEmulate(
        PRIOR,
        encoder=torch.nn.Sequential(torch.nn.Flatten(), ResidualMLP(width, 4)),
        embedding_dim=4,
        show_progress_bars=False,
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            estimator = trainer.append_simulations(theta, x).train(
                max_num_epochs=1, training_batch_size=8
            )
    except NAMED as error:
        assert any(word in str(error) for word in WORDS), error
        assert not training_summary(trainer)["epochs_trained"], "refused before training"
        return
    assert torch.isfinite(estimator.unnormalized_log_ratio(torch.zeros(1, 2), x[:1].float())).all()


ODD = st.sampled_from([0, -1, 1.5, True, None, "3", float("nan"), 2, 4])


@FUZZ
@given(
    length=st.sampled_from([200, 8, 0, 3.0]),
    output_dim=ODD,
    channels=ODD,
    num_blocks=ODD,
    kernel_size=ODD,
    downsample=ODD,
)
def test_conv_encoder_arguments_are_checked_by_name(
    length, output_dim, channels, num_blocks, kernel_size, downsample
):
    kwargs = {"channels": channels, "num_blocks": num_blocks, "kernel_size": kernel_size}
    kwargs["downsample"] = downsample
    try:
        encoder = ConvEncoder1D(length, output_dim, **kwargs)
    except NAMED as error:
        assert "`" in str(error), error  # names the argument
        return
    assert encoder(torch.zeros(2, length)).shape == (2, output_dim)


@st.composite
def observations(draw):
    shape = draw(st.sampled_from([(3, 40), (40,), (3, 1, 40), (3, 2, 40), (0, 40), (3, 39)]))
    dtype = draw(st.sampled_from([torch.float32, torch.float64, torch.float16, torch.int64]))
    x = torch.randn(shape, generator=torch.Generator().manual_seed(3)).to(dtype)
    if draw(st.booleans()) and x.numel() and dtype.is_floating_point:
        x.view(-1)[0] = draw(st.sampled_from([float("nan"), float("inf")]))
    return x


@FUZZ
@given(x=observations())
def test_the_embedding_refuses_bad_observations_by_name(x):
    torch.manual_seed(0)
    embedding = SymmetryEmbedding(ConvEncoder1D(40, 3, channels=2, num_blocks=1), freeze="none")
    try:
        z = embedding(x)
    except NAMED as error:
        assert "`x`" in str(error), error
        return
    assert z.shape == (x.shape[0], 3) and torch.isfinite(z).all()


@FUZZ
@given(
    temperature=st.sampled_from([0.15, 0, -1, float("inf"), "hot", True]),
    similarity=st.sampled_from(["cosine", "scaled", "dot", "l2", None]),
    embedding_dim=ODD,
    symmetry_weight=st.sampled_from([0.0, -0.5, float("nan"), 1.0]),
)
def test_embed_emulate_constructor_checks_every_argument(
    temperature, similarity, embedding_dim, symmetry_weight
):
    kwargs = {"temperature": temperature, "similarity": similarity, "embedding_dim": embedding_dim}
    try:
        EmbedEmulate(PRIOR, symmetry_weight=symmetry_weight, show_progress_bars=False, **kwargs)
    except NAMED as error:
        assert "`" in str(error), error
        return
    assert temperature == 0.15 and similarity in ("cosine", "scaled", "dot")
