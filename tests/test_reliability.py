"""Regression tests of the reliability pass: errors where the user makes them, named early."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from sbi.utils import BoxUniform

from sbi_symmetry import cli
from sbi_symmetry.emulate import EmbedEmulate
from sbi_symmetry.evaluation import calibrate
from sbi_symmetry.nets.conv import ConvEncoder1D
from sbi_symmetry.reference.fisher import cramer_rao_bound
from sbi_symmetry.simulation import ChunkError, simulate_dataset
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


def _store(tmp_path, simulator, prior, **kwargs):
    return simulate_dataset(
        simulator,
        prior,
        12,
        path=tmp_path / "store",
        chunk_size=4,
        engine="serial",
        show_progress_bar=False,
        **kwargs,
    )


_CALLS: list[int] = []  # module level: each chunk gets its own copy of the simulator object


class _StopsAfterOneChunk:
    def __call__(self, theta):
        _CALLS.append(len(theta))
        if len(_CALLS) > 2:  # the fingerprint's probe, then chunk 0
            raise RuntimeError("interrupted")
        return theta * 2


def test_resuming_a_store_with_another_simulator_or_prior_is_refused(tmp_path):
    prior = BoxUniform(torch.zeros(2), torch.ones(2))
    _CALLS.clear()
    with pytest.raises(ChunkError):
        _store(tmp_path, _StopsAfterOneChunk(), prior)
    with pytest.raises(ValueError, match=r"its prior differs .*BoxUniform"):
        _store(
            tmp_path, lambda t: t * 2, BoxUniform(torch.zeros(2), 2 * torch.ones(2)), resume=True
        )
    with pytest.raises(ValueError, match=r"simulator gives other data .*probe hash"):
        _store(tmp_path, lambda t: t * 3, prior, resume=True)
    store = _store(tmp_path, lambda t: t * 2, prior, resume=True)  # the same maths: accepted
    np.testing.assert_array_equal(store.x, 2 * store.theta)
    assert store.metadata["fingerprint_calls"] == 2


def test_a_simulator_that_ignores_the_seeds_is_compared_by_name(tmp_path):
    prior = BoxUniform(torch.zeros(2), torch.ones(2))

    def noisy(theta):  # fresh OS entropy: different on every call whatever the seeds
        noise = np.random.default_rng().normal(size=theta.shape)
        return theta + torch.as_tensor(noise, dtype=torch.float32)

    _store(tmp_path, noisy, prior)
    with pytest.warns(UserWarning, match="does not follow"):
        _store(tmp_path, noisy, prior, resume=True)


def _global_states():
    return torch.get_rng_state(), np.random.get_state()[1].copy()


def _assert_untouched(before):
    after = _global_states()
    assert torch.equal(before[0], after[0]) and np.array_equal(before[1], after[1])


def test_pretraining_and_calibration_leave_the_callers_random_state_alone():
    torch.manual_seed(123)
    np.random.seed(123)
    encoder = torch.nn.Linear(6, 2)
    before = _global_states()
    settings = {"batch_size": 16, "max_epochs": 2, "freeze": "none", "show_progress_bar": False}
    x = torch.randn(80, 6, generator=torch.Generator().manual_seed(0))

    class Views:
        input_kind = "x"

        def __call__(self, x):
            return x + 0.1 * torch.randn_like(x), x + 0.1 * torch.randn_like(x)

    first = pretrain_vicreg(encoder, Views(), x=x, seed=4, **settings)
    _assert_untouched(before)
    torch.manual_seed(0)  # the encoder's initial weights are the caller's
    one = pretrain_vicreg(torch.nn.Linear(6, 2), Views(), x=x, seed=4, **settings)
    torch.manual_seed(0)
    two = pretrain_vicreg(torch.nn.Linear(6, 2), Views(), x=x, seed=4, **settings)
    assert one.history["train_total"] == two.history["train_total"]
    assert first.history["train_total"] != one.history["train_total"]

    prior = BoxUniform(torch.zeros(2), torch.ones(2))
    posterior = _ToyPosterior()
    thetas = prior.sample((20,))
    torch.manual_seed(5)
    np.random.seed(5)
    before = _global_states()
    a = calibrate(posterior, prior, thetas, thetas, num_posterior_samples=30, seed=1)
    _assert_untouched(before)
    b = calibrate(posterior, prior, thetas, thetas, num_posterior_samples=30, seed=1)
    assert torch.equal(a.ranks, b.ranks)


class _ToyPosterior:
    """Draws from torch and numpy's global generators, as sbi's samplers do."""

    def sample_batched(self, sample_shape, x, show_progress_bars=False, **_):
        noise = torch.as_tensor(np.random.uniform(-0.1, 0.1, (*sample_shape, *x.shape)))
        return (x + noise.float() + 0.01 * torch.randn(*sample_shape, *x.shape)).clamp(0, 1)


def test_cramer_rao_refuses_rows_without_information_and_flags_rows_outside_the_prior():
    task = DampedOscillator()
    shift = torch.full((1, 1), 0.1)
    with pytest.raises(ValueError, match=r"no information on theta at row\(s\) \[0\]"):
        cramer_rao_bound(task, torch.tensor([[1e-6, 0.3]]), shift)  # w0 -> 0: no oscillation
    with pytest.warns(UserWarning, match=r"Row\(s\) \[0\] of `theta` lie outside"):
        bound = cramer_rao_bound(task, torch.tensor([[20.0, 0.3]]), shift)
    assert torch.isfinite(bound).all()


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
    cfg = _tiny_run_config()
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


def _tiny_run_config():
    from sbi_symmetry.workflow.config import RunConfig

    return RunConfig.from_preset(
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


@pytest.mark.slow
def test_an_interrupted_run_resumes_from_its_finished_stages(tmp_path, monkeypatch):
    from sbi_symmetry.workflow import parallel, stages

    cfg = _tiny_run_config()
    quiet = {"show_progress": False, "log": lambda _: None}
    first: list[str] = []
    whole = pipeline.run(cfg, tmp_path / "whole", show_progress=False, log=first.append)
    assert "beside the training" in first[3]  # two workers: the references while they train

    real_references = stages.references

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(stages, "references", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(cfg, tmp_path / "cut", **quiet)
    assert not (tmp_path / "cut" / "metrics.json").exists()
    with pytest.raises(FileExistsError, match="--resume"):
        pipeline.run(cfg, tmp_path / "cut", **quiet)
    with pytest.raises(ValueError, match=r"other settings .*seed"):
        pipeline.run(dataclasses.replace(cfg, seed=1), tmp_path / "cut", resume=True, **quiet)

    def must_not_train(*args, **kwargs):
        raise AssertionError("a finished stage ran again")

    monkeypatch.setattr(stages, "references", real_references)
    monkeypatch.setattr(parallel, "train_method", must_not_train)
    lines: list[str] = []
    resumed = pipeline.run(
        cfg, tmp_path / "cut", resume=True, show_progress=False, log=lines.append
    )
    assert "(resumed)" in lines[1] and "(resumed)" not in lines[3]
    for name in cfg.methods:
        assert resumed["methods"][name]["c2st"] == whole["methods"][name]["c2st"], name
        assert resumed["methods"][name]["calibration"] == whole["methods"][name]["calibration"]


@pytest.mark.slow
def test_a_run_interrupted_while_training_keeps_the_methods_that_finished(tmp_path, monkeypatch):
    from sbi_symmetry.workflow import parallel
    from sbi_symmetry.workflow.registry import METHODS

    cfg = dataclasses.replace(_tiny_run_config(), workers=1)
    quiet = {"show_progress": False, "log": lambda _: None}
    whole = pipeline.run(cfg, tmp_path / "whole", **quiet)

    def interrupted(ctx):
        raise KeyboardInterrupt

    real = METHODS["embed_emulate"]
    monkeypatch.setitem(METHODS, "embed_emulate", dataclasses.replace(real, train=interrupted))
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(cfg, tmp_path / "cut", **quiet)
    monkeypatch.setitem(METHODS, "embed_emulate", real)
    trained_now: list[str] = []
    train_method = parallel.train_method

    def counted(spec, ctx):
        trained_now.append(spec.name)
        return train_method(spec, ctx)

    monkeypatch.setattr(parallel, "train_method", counted)
    lines: list[str] = []
    resumed = pipeline.run(
        cfg, tmp_path / "cut", resume=True, show_progress=False, log=lines.append
    )
    assert trained_now == ["embed_emulate"]  # raw NPE had finished: loaded, not trained again
    assert "(resumed)" in lines[1] and "(resumed)" not in lines[2]
    for name in cfg.methods:
        assert resumed["methods"][name]["c2st"] == whole["methods"][name]["c2st"], name


@pytest.mark.slow
def test_a_run_interrupted_while_calibrating_keeps_the_methods_calibrated(tmp_path, monkeypatch):
    """Accuracy and calibration are saved per method: only the one cut short runs again."""
    from sbi_symmetry.workflow import stages

    cfg = dataclasses.replace(_tiny_run_config(), workers=1)
    real, calls = stages.calibrate, []

    def cut_at_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(stages, "calibrate", cut_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(cfg, tmp_path / "cut", show_progress=False, log=lambda _: None)
    stages_dir = tmp_path / "cut" / ".stages"
    assert (stages_dir / "calibration_raw_npe.pt").exists()  # benchmarks read these names
    assert (stages_dir / "accuracy_embed_emulate.pt").exists()
    assert not (stages_dir / "calibration_embed_emulate.pt").exists()
    calls.clear()
    lines: list[str] = []
    pipeline.run(cfg, tmp_path / "cut", resume=True, show_progress=False, log=lines.append)
    assert len(calls) == 1  # embed_emulate's only
    assert "(resumed)" in lines[4] and "(resumed)" not in lines[5]
    seconds = json.loads((tmp_path / "cut" / "metrics.json").read_text())["wall_seconds"]
    assert "train (loaded by --resume)" in seconds and "simulate (loaded by --resume)" in seconds
    assert "calibration (loaded 1 of 2 by --resume)" in seconds  # the rest is real work
