"""FourierFeatures and the default emulator behind them: shapes, maths, saving, errors."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sbi_symmetry.emulate.builder import default_emulator, embed_emulate_classifier
from sbi_symmetry.nets.fourier import FourierFeatures
from sbi_symmetry.nets.mlp import ResidualMLP


@settings(deadline=None, max_examples=25)
@given(
    dim=st.integers(1, 4),
    freqs=st.integers(1, 9),
    batch=st.integers(1, 6),
    scale=st.floats(0.1, 10.0),
)
def test_features_are_the_input_and_its_sines_and_cosines(dim, freqs, batch, scale):
    torch.manual_seed(0)
    phi = FourierFeatures(dim, freqs, scale=scale)
    theta = torch.randn(batch, dim)
    out = phi(theta)
    assert out.shape == (batch, dim + 2 * freqs) == (batch, phi.output_dim)
    assert torch.equal(out[:, :dim], theta)
    angles = 2 * math.pi * theta @ phi.frequencies
    torch.testing.assert_close(out[:, dim : dim + freqs], torch.sin(angles))
    # sin^2 + cos^2 = 1 for every frequency
    sq = out[:, dim : dim + freqs] ** 2 + out[:, dim + freqs :] ** 2
    torch.testing.assert_close(sq, torch.ones_like(sq))


def test_scale_sets_the_spread_of_the_frequencies():
    torch.manual_seed(0)
    std = FourierFeatures(2, 5000, scale=3.0).frequencies.std().item()
    assert 2.9 < std < 3.1


@pytest.mark.parametrize("learnable", [False, True])
def test_frequencies_are_saved_and_trained_only_when_learnable(learnable):
    torch.manual_seed(0)
    phi = FourierFeatures(2, 4, learnable=learnable)
    assert ("frequencies" in dict(phi.named_parameters())) is learnable
    assert "frequencies" in phi.state_dict()
    torch.manual_seed(1)
    other = FourierFeatures(2, 4, learnable=learnable)
    other.load_state_dict(phi.state_dict())
    theta = torch.randn(3, 2)
    assert torch.equal(other(theta), phi(theta))


def test_default_emulator_puts_the_features_in_front_of_the_mlp():
    plain = default_emulator(2, 8, hidden_dim=16)
    assert isinstance(plain, ResidualMLP) and plain.input_dim == 2
    fourier = default_emulator(2, 8, fourier_features=6, hidden_dim=16, fourier_learnable=True)
    assert isinstance(fourier[0], FourierFeatures) and fourier[1].input_dim == 14
    assert fourier(torch.zeros(3, 2)).shape == (3, 8)


def test_builder_passes_the_fourier_options_to_the_emulator():
    torch.manual_seed(0)
    build = embed_emulate_classifier(
        torch.nn.Linear(5, 4), emulator_kwargs={"fourier_features": 3, "fourier_scale": 2.0}
    )
    est = build(torch.randn(10, 2), torch.randn(10, 5))
    assert isinstance(est.emulator[0], FourierFeatures)
    assert est.emulator[0].frequencies.shape == (2, 3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"input_dim": 0, "num_frequencies": 2}, "input_dim"),
        ({"input_dim": 2, "num_frequencies": 0}, "num_frequencies"),
        ({"input_dim": 2, "num_frequencies": 2, "scale": 0.0}, "scale"),
    ],
)
def test_bad_arguments_raise_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FourierFeatures(**kwargs)


def test_wrong_input_width_and_bad_feature_count_raise():
    with pytest.raises(ValueError, match="last dimension 2"):
        FourierFeatures(2, 3)(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="fourier_features"):
        default_emulator(2, 8, fourier_features=-1)
