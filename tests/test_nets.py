"""ConvEncoder1D and Expander: shapes, shift invariance by construction, config, errors."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sbi_symmetry.nets.conv import ConvEncoder1D
from sbi_symmetry.nets.heads import Expander
from sbi_symmetry.nets.split import split_head, tail_reproduces
from sbi_symmetry.symmetry.embedding import SymmetryEmbedding
from sbi_symmetry.tasks import DampedOscillator, SineGaussian

TINY = {"channels": 4, "num_blocks": 2, "kernel_size": 5, "hidden_dim": 16}


def tiny(length: int = 40, **kwargs) -> ConvEncoder1D:
    torch.manual_seed(0)
    return ConvEncoder1D(length, **{**TINY, **kwargs})


def num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("pooling", ["mean", "max", "meanstd", "flatten"])
@pytest.mark.parametrize("batch", [1, 7])
def test_output_shape_for_2d_and_3d_inputs(pooling, batch):
    enc = tiny(pooling=pooling, output_dim=5)
    x = torch.randn(batch, 40)
    out = enc(x)
    assert out.shape == (batch, 5) and out.dtype == torch.float32
    assert torch.equal(out, enc(x.unsqueeze(1)))


def test_multichannel_input_and_batch_of_one_in_train_mode():
    enc = tiny(in_channels=3, norm="group")
    enc.train()
    assert enc(torch.randn(1, 3, 40)).shape == (1, 3)
    out = enc(torch.randn(6, 3, 40))
    out.sum().backward()
    assert all(p.grad is not None for p in enc.parameters())


def test_float64_model_gives_float64_output():
    enc = tiny().double()
    assert enc(torch.randn(2, 40, dtype=torch.float64)).dtype == torch.float64


def test_backbone_and_head_compose_to_forward():
    enc = tiny(pooling="max")
    x = torch.randn(3, 1, 40)
    features = enc.backbone(x)
    assert features.shape == (3, TINY["channels"], 40)
    assert torch.equal(enc.head(features), enc(x))
    assert enc.output_dim == 3


def test_per_block_dilation_and_padding_mode_are_applied():
    enc = tiny(dilation=[1, 3], padding_mode="circular")
    convs = [m for m in enc.backbone.modules() if isinstance(m, torch.nn.Conv1d)]
    assert [c.dilation[0] for c in convs] == [1, 1, 1, 3, 3]
    assert {c.padding_mode for c in convs} == {"circular"}
    assert enc(torch.randn(2, 40)).shape == (2, 3)


# ------------------------------------------------------------------------------- invariance
@given(
    shift=st.integers(-80, 80),
    pooling=st.sampled_from(["mean", "max", "meanstd"]),
    kernel=st.sampled_from([3, 4, 7]),
    dilation=st.sampled_from([1, 2]),
    norm=st.sampled_from(["none", "group"]),
)
def test_pooled_circular_encoder_is_exactly_invariant_to_rolls(
    shift, pooling, kernel, dilation, norm
):
    torch.manual_seed(0)
    enc = ConvEncoder1D(
        40,
        4,
        in_channels=2,
        channels=5,
        num_blocks=2,
        kernel_size=kernel,
        dilation=dilation,
        pooling=pooling,
        hidden_dim=8,
        padding_mode="circular",
        norm=norm,
    ).double()
    x = torch.randn(3, 2, 40, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    rolled = torch.roll(x, shift, dims=-1)
    # Equal up to float64 rounding (~1e-16): the convolutions and the mean add the same
    # products in a position-dependent order.
    assert torch.allclose(enc(rolled), enc(x), rtol=0, atol=1e-12)


def test_flatten_head_is_not_shift_invariant():
    enc = tiny(pooling="flatten", padding_mode="circular").double()
    x = torch.randn(3, 40, dtype=torch.float64)
    diff = (enc(torch.roll(x, 5, dims=-1)) - enc(x)).abs().max()
    assert diff > 1e-3  # so the invariance property above is a real check


@given(shift=st.integers(-8, 8), pooling=st.sampled_from(["mean", "max", "meanstd"]))
def test_pooled_zero_padded_encoder_is_invariant_away_from_the_edges(shift, pooling):
    # With zero padding, features near the window's edges differ from those in the middle, but a
    # signal that stays clear of the edges (by more than the receptive field) moves freely.
    torch.manual_seed(0)
    enc = ConvEncoder1D(64, 3, channels=4, num_blocks=2, kernel_size=3, pooling=pooling).double()
    x = torch.zeros(2, 64, dtype=torch.float64)
    x[:, 24:34] = torch.randn(2, 10, generator=torch.Generator().manual_seed(2), dtype=x.dtype)
    assert torch.allclose(enc(torch.roll(x, shift, dims=-1)), enc(x), rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------- front end
@pytest.mark.parametrize(
    ("length", "downsample", "stride", "kernel", "expected"),
    [
        (40, 1, 1, 5, 40),
        (40, 4, 1, 5, 10),
        (42, 4, 1, 5, 11),  # the last partial window is kept
        (40, 1, 2, 5, 20),
        (40, 2, 2, 4, 10),
        (41, 1, 3, 6, 14),
    ],
)
def test_front_end_sets_the_feature_length(length, downsample, stride, kernel, expected):
    for pooling in ("mean", "flatten"):
        enc = tiny(
            length, downsample=downsample, stride=stride, kernel_size=kernel, pooling=pooling
        )
        assert enc.feature_length == expected
        x = torch.randn(3, length)
        assert enc.backbone(x.unsqueeze(1)).shape == (3, TINY["channels"], expected)
        assert enc(x).shape == (3, 3) and enc(x[:1]).shape == (1, 3)


def test_average_pooling_front_end_feeds_window_means_to_the_first_convolution():
    enc = tiny(downsample=4)
    pool, stem = enc.backbone[0], enc.backbone[1]
    assert isinstance(pool, torch.nn.AvgPool1d) and isinstance(stem, torch.nn.Conv1d)
    x = torch.randn(2, 1, 40)
    assert torch.allclose(pool(x), x.reshape(2, 1, 10, 4).mean(-1))
    # No front end: the parameter names of the encoder are those it always had.
    assert next(iter(tiny().state_dict())) == "backbone.0.weight"


@given(
    factor=st.sampled_from([2, 4, 5]),
    which=st.sampled_from(["downsample", "stride"]),
    steps=st.integers(-8, 8),
    pooling=st.sampled_from(["mean", "max", "meanstd"]),
)
def test_front_end_keeps_exact_invariance_to_rolls_by_its_factor(factor, which, steps, pooling):
    torch.manual_seed(0)
    enc = tiny(40, padding_mode="circular", pooling=pooling, **{which: factor}).double()
    x = torch.randn(3, 40, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    rolled = torch.roll(x, steps * factor, dims=-1)
    assert torch.allclose(enc(rolled), enc(x), rtol=0, atol=1e-12)


def test_front_end_divides_the_convolution_cost_by_its_factor():
    from sbi_symmetry.evaluation import count_macs

    def conv_macs(enc: ConvEncoder1D) -> int:
        return count_macs(enc.backbone, lambda: enc.backbone(torch.zeros(1000, 1, 40)))

    full = tiny(num_blocks=1)
    # stem 1*4*5 + one block 2 * 4*4*5 per output sample, 40 samples
    assert conv_macs(full) == 1000 * 40 * (20 + 160)
    assert conv_macs(tiny(num_blocks=1, downsample=4)) == conv_macs(full) // 4
    assert conv_macs(tiny(num_blocks=1, stride=2)) == conv_macs(full) // 2


# ------------------------------------------------------------------------------- sbi
@pytest.mark.parametrize("channels", [1, 2])
def test_works_as_sbi_embedding_net(channels):
    from sbi.neural_nets import posterior_nn

    enc = tiny(in_channels=channels)
    theta = torch.rand(30, 2)
    x = torch.randn(30, channels, 40).squeeze(1)
    estimator = posterior_nn("maf", embedding_net=enc, z_score_x="none")(theta, x)
    log_prob = estimator.log_prob(theta[:1].unsqueeze(0), x[:1])  # a batch of one
    assert log_prob.shape == (1, 1) and torch.isfinite(log_prob).all()


# ------------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"pooling": "flatten", "dilation": [1, 2], "activation": "gelu"},
        {"in_channels": 3, "padding_mode": "circular", "norm": "group", "output_dim": 7},
        {"downsample": 4, "stride": 2, "pooling": "flatten"},
    ],
)
def test_config_rebuilds_the_same_architecture(kwargs):
    enc = tiny(**kwargs)
    config = json.loads(json.dumps(enc.config))  # JSON round trip
    rebuilt = ConvEncoder1D(**config)
    assert rebuilt.config == enc.config
    ref, new = enc.state_dict(), rebuilt.state_dict()
    assert list(ref) == list(new)
    assert all(ref[k].shape == new[k].shape for k in ref)
    rebuilt.load_state_dict(ref)
    x = torch.randn(2, enc.in_channels, 40)
    assert torch.equal(rebuilt(x), enc(x))


def test_paper_sizes_and_parameter_counts():
    sho = ConvEncoder1D.paper("damped-oscillator")
    assert sho.config["input_length"] == 200
    assert (sho.config["channels"], sho.config["num_blocks"], sho.config["kernel_size"]) == (
        20,
        4,
        21,
    )
    # stem 1*20*21 + 20; each block 2 * (20*20*21 + 20); head 20*100 + 100 + 100*3 + 3
    backbone = 440 + 4 * 2 * (20 * 20 * 21 + 20)
    assert num_params(sho.backbone) == backbone == 67_800
    assert num_params(sho) == backbone + 2_100 + 303 == 70_203
    flat = ConvEncoder1D.paper(DampedOscillator(), pooling="flatten")
    assert num_params(flat) == backbone + (20 * 200 * 100 + 100) + 303 == 468_203
    sg = ConvEncoder1D.paper(SineGaussian())
    assert (sg.config["input_length"], sg.config["channels"], sg.config["kernel_size"]) == (
        500,
        10,
        11,
    )
    with pytest.raises(ValueError, match="task"):
        ConvEncoder1D.paper("lorenz")


# ------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("x", "match"),
    [
        (torch.randn(2, 39), r"\(B, 1, 40\) or \(B, 40\); got \(2, 39\) \(length 39\)"),
        (torch.randn(2, 2, 40), r"got \(2, 2, 40\) \(2 channel\(s\)\)"),
        (torch.randn(40), r"got \(40,\) \(1 dimension\(s\)\)"),
        (torch.randn(2, 1, 1, 40), r"4 dimension\(s\)"),
    ],
)
def test_bad_input_shapes_raise_naming_the_expected_shape(x, match):
    with pytest.raises(ValueError, match=match):
        tiny()(x)


def test_multichannel_encoder_rejects_2d_input():
    with pytest.raises(ValueError, match=r"\(B, 3, 40\); got \(2, 40\)"):
        tiny(in_channels=3)(torch.randn(2, 40))


def test_non_tensor_and_integer_inputs_raise():
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        tiny()([[0.0] * 40])
    with pytest.raises(TypeError, match="floating-point"):
        tiny()(torch.zeros(2, 40, dtype=torch.long))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"pooling": "avg"}, "pooling"),
        ({"padding_mode": "reflect"}, "padding_mode"),
        ({"dilation": [1, 2, 3]}, "one per block"),
        ({"dilation": 0}, "dilation"),
        ({"channels": 0}, "channels"),
        ({"output_dim": 2.5}, "output_dim"),
        ({"kernel_size": 101, "padding_mode": "circular"}, "circular padding"),
        ({"kernel_size": 25, "downsample": 4, "padding_mode": "circular"}, "circular padding"),
        ({"downsample": 0}, "downsample"),
        ({"downsample": 41}, "downsample"),
        ({"stride": 1.5}, "stride"),
        ({"kernel_size": 4, "stride": 2, "downsample": 40}, "no output"),
        ({"downsample": 3, "padding_mode": "circular"}, r"downsample \* stride \(3\) divides"),
        ({"stride": 3, "padding_mode": "circular"}, r"downsample \* stride \(3\) divides"),
    ],
)
def test_bad_constructor_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ConvEncoder1D(40, **{**TINY, **kwargs})


@pytest.mark.parametrize("pooling", ["mean", "flatten"])
def test_an_even_kernel_keeps_the_length_it_reports(pooling):
    enc = ConvEncoder1D(50, 3, channels=4, num_blocks=1, kernel_size=4, pooling=pooling)
    assert enc.feature_length == 50 and enc.backbone(torch.randn(2, 1, 50)).shape[-1] == 50
    assert enc(torch.randn(2, 50)).shape == (2, 3)  # flatten: once a shape error here


def test_circular_padding_with_a_dividing_front_end_is_exactly_invariant_to_its_shifts():
    torch.manual_seed(0)
    enc = ConvEncoder1D(
        36, 3, channels=4, num_blocks=1, kernel_size=3, downsample=4, padding_mode="circular"
    )
    x = torch.randn(3, 36, dtype=torch.float64)
    enc = enc.double().eval()
    torch.testing.assert_close(enc(torch.roll(x, 8, dims=-1)), enc(x))


# ------------------------------------------------------------------------------- Expander
def test_expander_is_the_paper_mlp():
    h = Expander(3)
    linears = [m for m in h.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (3, 20),
        (20, 20),
        (20, 20),
        (20, 12),
    ]
    assert sum(isinstance(m, torch.nn.ReLU) for m in h.modules()) == 3
    assert num_params(h) == 80 + 420 + 420 + 252
    assert h(torch.randn(1, 3)).shape == (1, 12)
    assert Expander(**json.loads(json.dumps(h.config))).config == h.config


def test_expander_options_and_errors():
    h = Expander(3, 6, hidden_dims=(), batch_norm=True)
    assert h(torch.randn(4, 3)).shape == (4, 6)
    with_bn = Expander(3, 6, hidden_dims=(8,), batch_norm=True)
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in with_bn.modules())
    with pytest.raises(ValueError, match=r"\(B, 3\)"):
        h(torch.randn(4, 4))
    with pytest.raises(ValueError, match="hidden_dims"):
        Expander(3, 6, hidden_dims=(0,))
    with pytest.raises(ValueError, match="input_dim"):
        Expander(0)


def test_meanstd_pooling_is_the_mean_then_the_std_over_time():
    torch.manual_seed(0)
    enc = tiny(pooling="meanstd")
    h = torch.randn(3, 4, 9)
    pooled = enc.head[0](h)
    expected = torch.cat([h.mean(-1), (h.var(-1, unbiased=False) + 1e-6).sqrt()], dim=-1)
    torch.testing.assert_close(pooled, expected)
    constant = torch.ones(2, 4, 9, requires_grad=True)
    enc.head[0](constant).sum().backward()
    assert torch.isfinite(constant.grad).all()


@pytest.mark.parametrize("pooling", ["mean", "max", "meanstd", "flatten"])
@pytest.mark.parametrize("wrapped", [False, True])
def test_split_head_cuts_after_the_pooling_and_reproduces_the_output(pooling, wrapped):
    enc = tiny(pooling=pooling)
    module = SymmetryEmbedding(enc, freeze="none") if wrapped else enc
    split = split_head(module)
    assert split is not None and split.cut is enc.head[0]  # the pooling stays on the cached side
    assert [type(m) for m in split.tail] == [torch.nn.Linear, torch.nn.ReLU, torch.nn.Linear]
    x = torch.randn(5, 40)
    with split.capture([]) as captured:
        out = module(x)
    assert len(captured) == 1
    torch.testing.assert_close(split.tail(captured[0]), out)
    assert split_head(module) is not None and not enc.head[0]._forward_hooks  # hook removed


class _PlainHead(torch.nn.Module):
    def __init__(self, head: torch.nn.Module) -> None:
        super().__init__()
        self.body, self.head = torch.nn.Linear(6, 4), head

    def forward(self, x):
        return self.head(self.body(x))


def test_split_head_takes_a_plain_head_whole_and_refuses_none_or_two():
    plain = _PlainHead(torch.nn.Linear(4, 2))
    split = split_head(plain)
    assert split is not None and split.cut is None and split.tail is plain.head
    with split.capture([]) as captured:
        out = plain(torch.randn(3, 6))
    torch.testing.assert_close(split.tail(captured[0]), out)
    sequential = _PlainHead(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU()))
    split = split_head(sequential)  # parameters from its first layer: the head itself
    assert split is not None and split.cut is None and split.tail is sequential.head
    with split.capture([]) as captured:
        out = sequential(torch.randn(3, 6))
    assert len(captured) == 1  # once hooked on a slice the encoder never calls
    torch.testing.assert_close(split.tail(captured[0]), out)
    assert split_head(torch.nn.Linear(2, 2)) is None  # no head
    assert split_head(_PlainHead(torch.nn.Sequential(torch.nn.ReLU()))) is None  # no parameters
    assert split_head(torch.nn.Sequential(tiny(), tiny())) is None  # two heads


def test_tail_reproduces_accepts_the_tail_and_refuses_a_changed_output():
    torch.manual_seed(0)
    enc = tiny()
    split = split_head(enc)
    x = torch.randn(6, 40)
    with split.capture([]) as captured, torch.no_grad():
        out = enc(x)
    enc.train()
    assert tail_reproduces(split.tail, captured[0], out)
    assert split.tail.training  # its mode is restored
    assert not tail_reproduces(split.tail, captured[0], 2 * out)  # a wrapper rescaled the output
    assert not tail_reproduces(split.tail, captured[0][:5], out)  # row counts differ
    assert tail_reproduces(torch.nn.Identity(), out, out.clone())
