"""Regression tests of the reliability pass: errors where the user makes them, named early."""

from __future__ import annotations

import pytest
import torch

from sbi_symmetry import cli
from sbi_symmetry.emulate import EmbedEmulate
from sbi_symmetry.nets.conv import ConvEncoder1D
from sbi_symmetry.symmetry.embedding import SymmetryEmbedding
from sbi_symmetry.symmetry.pretrain import pretrain_vicreg
from sbi_symmetry.tasks import DampedOscillator, Lorenz96, SineGaussian
from sbi_symmetry.workflow import pipeline

pytestmark = pytest.mark.filterwarnings("ignore:Maximum number of epochs:UserWarning")


@pytest.mark.parametrize("task", [DampedOscillator(), SineGaussian(), Lorenz96()])
def test_simulating_no_parameters_blames_theta(task):
    with pytest.raises(ValueError, match="`theta` has no rows"):
        task.simulate(torch.empty(0, task.theta_dim))


def test_float64_data_from_numpy_are_accepted():
    x = torch.randn(5, 200, dtype=torch.float64)
    encoder = ConvEncoder1D(200, 3, channels=2, num_blocks=1)
    assert encoder(x).dtype == torch.float32
    torch.testing.assert_close(encoder(x), encoder(x.float()))
    embedding = SymmetryEmbedding(encoder, freeze="none")
    assert embedding(x).shape == (5, 3)
    with pytest.raises(TypeError, match="floating-point"):
        embedding(torch.ones(5, 200, dtype=torch.long))


def test_embed_emulate_ratios_accept_float64_data():
    task = DampedOscillator()
    theta, x = task.sample_joint(120, generator=torch.Generator().manual_seed(0))
    trainer = EmbedEmulate(
        task.prior,
        encoder=ConvEncoder1D(200, 4, channels=2, num_blocks=1, downsample=8),
        show_progress_bars=False,
    )
    estimator = trainer.append_simulations(theta, x).train(max_num_epochs=1)
    ratios = estimator.unnormalized_log_ratio(theta[:3], x[:3].double())
    torch.testing.assert_close(ratios, estimator.unnormalized_log_ratio(theta[:3], x[:3]))


def test_a_truncated_checkpoint_is_named_and_explained(tmp_path):
    class Views:
        input_kind = "x"

        def __call__(self, x):
            return x + 0.1 * torch.randn_like(x), x + 0.1 * torch.randn_like(x)

    path = tmp_path / "pretrain.pt"
    path.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match=r"pretrain\.pt is damaged .*start over"):
        pretrain_vicreg(
            torch.nn.Linear(6, 2),
            Views(),
            x=torch.randn(100, 6),
            batch_size=16,
            max_epochs=1,
            freeze="none",
            checkpoint_path=path,
            resume=True,
            show_progress_bar=False,
        )


def _refused(argv, monkeypatch, capsys) -> str:
    calls = []
    monkeypatch.setattr(pipeline, "run", lambda *a, **k: calls.append(a))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2 and not calls, "refused before any work"
    return capsys.readouterr().err


def test_a_negative_seed_is_refused_before_any_work(monkeypatch, capsys):
    assert "--seed must be a non-negative integer" in _refused(
        ["run", "--seed", "-3"], monkeypatch, capsys
    )


def test_an_output_folder_under_a_file_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    err = _refused(["run", "--out", str(tmp_path / "notes.txt" / "run")], monkeypatch, capsys)
    assert "is a file" in err and "Traceback" not in err
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_an_unavailable_device_is_refused_naming_what_is_available(monkeypatch, capsys):
    err = _refused(["run", "--device", "cuda"], monkeypatch, capsys)
    assert "not available on this machine (available: cpu" in err
    assert "not a torch device" in _refused(["run", "--device", "gpu7"], monkeypatch, capsys)


def test_a_nan_observation_is_refused_at_the_posterior_door():
    task = DampedOscillator()
    theta, x = task.sample_joint(120, generator=torch.Generator().manual_seed(0))
    x_o = x[:1].clone()
    x_o[0, 5] = float("nan")
    embedding = SymmetryEmbedding(ConvEncoder1D(200, 3, channels=2, num_blocks=1), freeze="none")
    with pytest.raises(ValueError, match="`x` contains 1 NaN"):
        embedding(x_o)
    trainer = EmbedEmulate(
        task.prior,
        encoder=ConvEncoder1D(200, 4, channels=2, num_blocks=1, downsample=8),
        show_progress_bars=False,
    )
    estimator = trainer.append_simulations(theta, x).train(max_num_epochs=1)
    with pytest.raises(ValueError, match=r"`x` contains \d+ NaN"):
        estimator.unnormalized_log_ratio(theta[:2], x_o.expand(2, -1))
    with pytest.raises(ValueError, match="NaN"):  # sbi's own check, at the posterior
        trainer.build_posterior().potential(theta[:2], x=x_o)


@pytest.mark.slow
def test_the_same_seed_gives_the_same_numbers_for_every_method(tmp_path):
    import numpy as np

    from sbi_symmetry.workflow.config import RunConfig

    cfg = RunConfig.from_preset(
        "damped-oscillator",
        "fast",
        num_simulations=500,
        num_observations=2,
        posterior_samples=200,
        sbc_pairs=20,
        sbc_pairs_ratio=20,
        sbc_posterior_samples=30,
        methods=("raw_npe", "embed_emulate"),
        npe_train={"max_num_epochs": 2},
        ee_train={"max_num_epochs": 2},
    )
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    runs = [
        pipeline.run(cfg, tmp_path / f"run{i}", show_progress=False, log=lambda _: None)
        for i in range(2)
    ]
    for name in cfg.methods:
        first, second = (r["methods"][name] for r in runs)
        assert first["c2st"] == second["c2st"], name
        assert first["calibration"] == second["calibration"], name
    assert (np.random.get_state()[1] == before).all()  # the caller's numpy state is restored
