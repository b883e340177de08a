"""Tests of SymmetryEmbedding: scaling, freezing, train/eval handling, save/load, sbi guards."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from sbi.utils.nn_utils import check_net_device, get_numel
from torch import nn

from sbi_symmetry.nets.conv import ConvEncoder1D
from sbi_symmetry.symmetry.embedding import SymmetryEmbedding, symmetry_posterior_nn


class BNEncoder(nn.Module):
    """A toy encoder whose backbone holds BatchNorm and Dropout."""

    def __init__(self, length: int = 16, output_dim: int = 2) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Linear(length, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5)
        )
        self.head = nn.Linear(8, output_dim)
        self.output_dim = output_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def conv() -> ConvEncoder1D:
    return ConvEncoder1D(32, 3, channels=4, num_blocks=2, kernel_size=5, hidden_dim=8)


# --------------------------------------------------------------------------------- forward
def test_forward_scales_the_input_before_the_encoder():
    enc = conv()
    emb = SymmetryEmbedding(enc, input_mean=0.5, input_std=2.0, freeze="none")
    x = torch.randn(6, 32)
    assert torch.allclose(emb(x), enc((x - 0.5) / 2.0))
    assert emb.output_dim == 3


def test_per_channel_scaling_broadcasts_over_channels():
    enc = ConvEncoder1D(32, 3, in_channels=2, channels=4, num_blocks=1, kernel_size=3)
    emb = SymmetryEmbedding(enc, input_mean=[1.0, -1.0], input_std=[2.0, 4.0], freeze="none")
    x = torch.randn(5, 2, 32)
    expected = enc((x - torch.tensor([[1.0], [-1.0]])) / torch.tensor([[2.0], [4.0]]))
    assert torch.allclose(emb(x), expected)
    with pytest.raises(ValueError, match=r"\(B, 2, \.\.\.\)"):
        emb(torch.randn(5, 32))


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (torch.randn(32), "batch dimension"),
        (torch.zeros(3, 32, device="meta"), "is on meta"),
        ([[0.0] * 32], "torch.Tensor"),
    ],
)
def test_bad_inputs_are_refused(x, match):
    emb = SymmetryEmbedding(conv(), freeze="none")
    with pytest.raises((ValueError, TypeError), match=match):
        emb(x)


def test_encoder_output_must_be_batch_by_dim():
    emb = SymmetryEmbedding(nn.Flatten(0), freeze="none")
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        emb(torch.randn(4, 5))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(input_std=0.0), "input_std"),
        (dict(input_mean=float("nan")), "input_mean"),
        (dict(input_mean=[0.0, 1.0], input_std=1.0), "same length"),
        (dict(freeze="head"), "freeze"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SymmetryEmbedding(conv(), **kwargs)


# --------------------------------------------------------------------------------- freezing
def test_the_default_trains_everything_and_takes_any_encoder():
    """``freeze="none"`` by default, as ``pretrain_vicreg``: no ``backbone``/``head`` needed."""
    emb = SymmetryEmbedding(nn.Linear(6, 2))
    assert emb.freeze == "none" and all(p.requires_grad for p in emb.parameters())


def test_freeze_modes_set_requires_grad():
    emb = SymmetryEmbedding(conv(), freeze="backbone")
    assert not any(p.requires_grad for p in emb.encoder.backbone.parameters())
    assert all(p.requires_grad for p in emb.encoder.head.parameters())
    emb.freeze = "all"
    assert not any(p.requires_grad for p in emb.parameters())
    emb.freeze = "none"
    assert all(p.requires_grad for p in emb.parameters())


def test_backbone_freeze_needs_backbone_and_head():
    with pytest.raises(ValueError, match="backbone"):
        SymmetryEmbedding(nn.Linear(4, 2), freeze="backbone")


@given(
    mode=st.sampled_from(["all", "backbone", "none"]),
    calls=st.lists(st.sampled_from(["train", "eval", "train_false"]), max_size=6),
)
def test_frozen_parts_stay_in_eval_whatever_is_called(mode, calls):
    emb = SymmetryEmbedding(BNEncoder(), freeze=mode)
    wrapper = nn.Sequential(emb)  # as inside sbi's estimator
    for call in calls:
        if call == "train":
            wrapper.train()
        elif call == "eval":
            wrapper.eval()
        else:
            wrapper.train(False)
    training = emb.training
    if mode == "all":
        assert not any(m.training for m in emb.encoder.modules())
    elif mode == "backbone":
        assert not any(m.training for m in emb.encoder.backbone.modules())
        assert emb.encoder.head.training == training
    else:
        assert all(m.training == training for m in emb.encoder.modules())


def test_frozen_backbone_batchnorm_statistics_do_not_move_in_train_mode():
    emb = SymmetryEmbedding(BNEncoder(), freeze="backbone").train()
    bn = emb.encoder.backbone[1]
    before = bn.running_mean.clone(), bn.running_var.clone()
    x = torch.randn(64, 16) * 3 + 1
    out1, out2 = emb(x), emb(x)
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert torch.equal(out1, out2)  # dropout in the frozen backbone is off


def test_sbi_probe_works_with_everything_frozen():
    emb = SymmetryEmbedding(conv(), freeze="all")
    assert not any(p.requires_grad for p in emb.parameters())
    # sbi calls next(net.parameters()) (StopIteration for a net without any) and probes
    # with a batch of one; frozen parameters still count as parameters.
    assert check_net_device(emb, "cpu") is emb
    assert get_numel(torch.randn(10, 32), embedding_net=emb) == 3


# --------------------------------------------------------------------------------- save / load
def test_save_load_round_trip_rebuilds_a_conv_encoder(tmp_path):
    torch.manual_seed(1)
    emb = SymmetryEmbedding(conv(), input_mean=0.3, input_std=1.7, freeze="backbone")
    emb.history = {"val_total": [3.0, 2.0]}
    emb.save(tmp_path / "emb")
    config = json.loads((tmp_path / "emb" / "config.json").read_text())
    assert config["encoder_class"] == "sbi_symmetry.nets.conv.ConvEncoder1D"
    assert config["encoder_config"] == emb.encoder.config
    assert config["freeze"] == "backbone" and config["output_dim"] == 3
    assert config["input_mean"] == pytest.approx([0.3]) and config["input_std"] == pytest.approx(
        [1.7]
    )
    assert {"sbi_symmetry", "torch", "sbi"} <= config["versions"].keys()
    state = torch.load(tmp_path / "emb" / "weights.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())

    loaded = SymmetryEmbedding.load(tmp_path / "emb")
    assert loaded.freeze == "backbone" and not loaded.training
    assert loaded.history == {"val_total": [3.0, 2.0]}
    x = torch.randn(4, 32)
    assert torch.equal(loaded(x), emb.eval()(x))
    assert sorted(p.name for p in (tmp_path / "emb").iterdir()) == ["config.json", "weights.pt"]


def test_save_refuses_to_overwrite(tmp_path):
    emb = SymmetryEmbedding(conv(), freeze="none")
    emb.save(tmp_path / "e")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        emb.save(tmp_path / "e")
    emb.save(tmp_path / "e", overwrite=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="folder"):
        emb.save(tmp_path / "file")


def test_a_newer_format_or_another_file_is_refused_on_load(tmp_path):
    SymmetryEmbedding(conv(), freeze="none").save(tmp_path / "e")
    path = tmp_path / "e" / "config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps({**config, "format_version": config["format_version"] + 1}))
    with pytest.raises(ValueError, match="upgrade sbi-symmetry"):
        SymmetryEmbedding.load(tmp_path / "e")
    path.write_text(json.dumps({**config, "format": "something else"}))
    with pytest.raises(ValueError, match="is not a SymmetryEmbedding config"):
        SymmetryEmbedding.load(tmp_path / "e")


def test_custom_encoders_need_an_instance_to_load(tmp_path):
    torch.manual_seed(2)
    emb = SymmetryEmbedding(BNEncoder(), input_std=2.0, freeze="all")
    emb.save(tmp_path / "bn")
    with pytest.raises(ValueError, match="encoder="):
        SymmetryEmbedding.load(tmp_path / "bn")
    loaded = SymmetryEmbedding.load(tmp_path / "bn", encoder=BNEncoder(), freeze="none")
    assert loaded.freeze == "none"
    x = torch.randn(3, 16)
    assert torch.equal(loaded(x), emb.eval()(x))
    with pytest.raises(ValueError, match="do not fit"):
        SymmetryEmbedding.load(tmp_path / "bn", encoder=BNEncoder(length=15))


def test_load_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        SymmetryEmbedding.load(tmp_path / "nothing")


# --------------------------------------------------------------------------------- sbi guards
def test_warns_once_when_input_looks_standardised_by_sbi():
    emb = SymmetryEmbedding(conv(), input_mean=3.0, input_std=0.5, freeze="none")
    raw = 3.0 + 0.5 * torch.randn(64, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        emb(raw)  # raw data like the pretraining data: no warning
    standardised = (raw - raw.mean(0)) / raw.std(0)
    with pytest.warns(UserWarning, match="z_score_x='none'"):
        emb(standardised)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        emb(standardised)  # only once


@pytest.mark.parametrize("batch_size", [1, 7, 20, 64])
def test_standardised_input_is_noticed_whatever_the_batch_size(batch_size):
    emb = SymmetryEmbedding(conv(), input_mean=3.0, input_std=0.5, freeze="none")
    raw = 3.0 + 0.5 * torch.randn(64, 32, generator=torch.Generator().manual_seed(1))
    standardised = (raw - raw.mean(0)) / raw.std(0)
    with pytest.warns(UserWarning, match="z_score_x='none'") as record:
        for start in range(0, 64, batch_size):
            emb(standardised[start : start + batch_size])
    assert sum("z_score_x" in str(w.message) for w in record) == 1


def test_no_warning_when_pretraining_data_were_standard_already():
    emb = SymmetryEmbedding(conv(), input_mean=0.0, input_std=1.0, freeze="none")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        emb(torch.randn(64, 32))


def test_posterior_nn_helper_forces_no_z_scoring():
    emb = SymmetryEmbedding(conv(), freeze="all")
    with pytest.raises(ValueError, match="z_score_x"):
        symmetry_posterior_nn(emb, "maf", z_score_x="independent")
    with pytest.raises(ValueError, match="z_score_x"):
        emb.classifier_nn("mlp", z_score_x="structured")
    build = emb.posterior_nn("maf", num_transforms=1)
    estimator = build(torch.rand(20, 2), torch.randn(20, 32))
    assert estimator.embedding_net is emb


def test_standardisation_warning_per_channel():
    enc = ConvEncoder1D(32, 3, in_channels=2, channels=4, num_blocks=1, kernel_size=3)
    emb = SymmetryEmbedding(enc, input_mean=[0.0, 5.0], input_std=[1.0, 3.0], freeze="none")
    raw = torch.randn(40, 2, 32) * torch.tensor([[1.0], [3.0]]) + torch.tensor([[0.0], [5.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        emb(raw)
    with pytest.warns(UserWarning, match="looks as if sbi"):
        emb(torch.randn(40, 2, 32))
