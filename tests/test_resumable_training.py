"""``ResumableTraining``: an NPE training cut at any save resumes to the uninterrupted result."""

from __future__ import annotations

import time

import pytest
import torch
from sbi.inference import NLE, NPE, NRE_C
from sbi.utils import BoxUniform
from torch import nn

from sbi_symmetry._sbi_compat import NullTracker, anneal, resume, training_summary
from sbi_symmetry.checkpoint import ResumableTraining, load_trainer_state, trainer_state
from sbi_symmetry.emulate import EmbedEmulate
from sbi_symmetry.nets.mlp import ResidualMLP
from sbi_symmetry.symmetry import SymmetryEmbedding, train_npe

BATCH = {"training_batch_size": 50}


#: Trainers the resumable training supports: NPE (plain, or around a SymmetryEmbedding with
#: train_npe's phases), Embed and Emulate (each ``train`` ends with its refining phase), NRE-C.
KINDS = ["plain", "embedding", "embed_emulate", "nre_c"]


@pytest.fixture(autouse=True)
def short_refining(monkeypatch):
    """Embed and Emulate's refining phase capped at 3 epochs (its default cap is 1,000)."""
    real = EmbedEmulate.refine
    monkeypatch.setattr(
        EmbedEmulate, "refine", lambda self, **kwargs: real(self, **{"max_num_epochs": 3, **kwargs})
    )


def _trainer(kind: str, rows: int = 300, shift: float = 0.0):
    """A small trainer of ``kind`` (:data:`KINDS`) on fixed simulations, and an embedding."""
    torch.manual_seed(0)
    prior = BoxUniform(torch.zeros(2), torch.ones(2))
    theta = prior.sample((rows,))
    x = torch.cat([theta, theta.flip(-1)], dim=1) + 0.05 * torch.randn(rows, 4) + shift
    embedding = SymmetryEmbedding(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)))
    quiet = {"tracker": NullTracker(), "show_progress_bars": False}
    if kind == "embed_emulate":
        trainer = EmbedEmulate(prior, encoder=ResidualMLP(4, 8, hidden_dim=16), **quiet)
    elif kind == "nre_c":
        trainer = NRE_C(prior, classifier="mlp", **quiet)
    else:
        build = embedding.posterior_nn("mdn") if kind == "embedding" else "mdn"
        trainer = NPE(prior, density_estimator=build, **quiet)
    return trainer.append_simulations(theta, x), embedding


def _phases(kind: str, trainer, embedding) -> None:
    """Three phases: sbi's train, a resumed phase and an annealed one (or train_npe's)."""
    if kind == "embedding":  # frozen start, fine-tuning, annealing
        train_npe(trainer, embedding, frozen_epochs=3, anneal=0.1, max_num_epochs=3, **BATCH)
        return
    trainer.train(max_num_epochs=3, **BATCH)
    resume(trainer, max_num_epochs=2, **BATCH)
    anneal(trainer, 0.1, max_num_epochs=2, **BATCH)


def _run(kind: str, path=None, stop_at: int | None = None):
    """Train (resumably if ``path``); raise KeyboardInterrupt after the ``stop_at``-th save."""
    trainer, embedding = _trainer(kind)
    torch.manual_seed(1)  # the batch order's stream
    if path is None:
        _phases(kind, trainer, embedding)
        return trainer, None
    saves: list[str] = []

    def log(line: str) -> None:
        saves.append(line)
        if len(saves) == stop_at:
            raise KeyboardInterrupt

    saver = ResumableTraining(path, every_s=0, log=log)
    with saver.attach(trainer):
        _phases(kind, trainer, embedding)
    return trainer, saver


def _same_training(a, b) -> None:
    for (name, x), (_, y) in zip(
        a._neural_net.state_dict().items(), b._neural_net.state_dict().items(), strict=True
    ):
        assert torch.equal(x, y), name
    assert training_summary(a)["epochs_trained"] == training_summary(b)["epochs_trained"]
    assert training_summary(a)["validation_loss"] == training_summary(b)["validation_loss"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stop_at", [1, 4, 5, 8, 11])
def test_a_training_cut_at_any_save_resumes_to_the_uninterrupted_result(
    tmp_path, one_thread, kind, stop_at
):
    whole, _ = _run(kind)
    with pytest.raises(KeyboardInterrupt):
        _run(kind, tmp_path / "npe.pt", stop_at=stop_at)
    resumed, saver = _run(kind, tmp_path / "npe.pt")
    _same_training(whole, resumed)
    assert saver.earlier_seconds > 0
    assert "train" not in vars(resumed)  # the trainer's own train method again


def test_saving_does_not_change_the_training_and_a_finished_one_is_loaded(tmp_path, one_thread):
    whole, _ = _run("plain")
    saved, first = _run("plain", tmp_path / "npe.pt")
    _same_training(whole, saved)
    again, second = _run("plain", tmp_path / "npe.pt")
    _same_training(whole, again)
    assert first.resumed == [] and second.resumed == ["phase 1", "phase 2", "phase 3"]


def _uncapped(path=None, stop_at: int | None = None):
    """sbi's train without ``max_num_epochs`` (early stopping ends it), cut at a save."""
    trainer, _ = _trainer("plain")
    torch.manual_seed(1)
    kwargs = {"stop_after_epochs": 2, **BATCH}
    if path is None:
        trainer.train(**kwargs)
        return trainer
    saves: list[str] = []

    def log(line: str) -> None:
        saves.append(line)
        if len(saves) == stop_at:
            raise KeyboardInterrupt

    with ResumableTraining(path, every_s=0, log=log).attach(trainer):
        trainer.train(**kwargs)
    return trainer


def test_a_phase_without_a_cap_cut_twice_resumes_to_the_uninterrupted_result(tmp_path, one_thread):
    whole = _uncapped()
    for _ in range(2):  # cut at the second save of each process
        with pytest.raises(KeyboardInterrupt):
            _uncapped(tmp_path / "npe.pt", stop_at=2)
    _same_training(whole, _uncapped(tmp_path / "npe.pt"))


def test_a_value_is_computed_once_with_the_random_state_after_it(tmp_path):
    path = tmp_path / "values.pt"
    first = ResumableTraining(path)
    torch.manual_seed(3)
    value = first.value("draw", lambda: (time.sleep(0.05), torch.rand(2))[1])
    after = torch.rand(1)

    def must_not_run():
        raise AssertionError("computed again")

    torch.manual_seed(99)
    again = ResumableTraining(path)
    assert torch.equal(again.value("draw", must_not_run), value)
    assert torch.equal(torch.rand(1), after) and again.resumed == ["draw"]
    fresh = ResumableTraining(path, resume=False)
    assert torch.equal(fresh.value("draw", lambda: torch.zeros(2)), torch.zeros(2))
    assert again.earlier_seconds == 0.0  # a value's time is not training time


def test_resuming_on_other_simulations_or_settings_is_refused(tmp_path, one_thread):
    path = tmp_path / "npe.pt"
    with pytest.raises(KeyboardInterrupt):
        _run("plain", path, stop_at=2)
    other, _ = _trainer("plain", shift=1.0)
    with pytest.raises(ValueError, match="other simulations"):
        with ResumableTraining(path).attach(other):
            other.train(max_num_epochs=3, **BATCH)
    changes = [
        ({"training_batch_size": 60}, "training_batch_size: was 50, now 60"),
        ({**BATCH, "max_num_epochs": 5}, "max_num_epochs: was 3, now 5"),
        ({**BATCH, "dataloader_kwargs": {"drop_last": False}}, "dataloader_kwargs: was None"),
    ]
    for change, message in changes:
        same, _ = _trainer("plain")
        with pytest.raises(ValueError, match=message):
            with ResumableTraining(path).attach(same):
                same.train(**{"max_num_epochs": 3, **change})


def test_bad_input_is_refused_before_training(tmp_path):
    prior = BoxUniform(torch.zeros(1), torch.ones(1))
    with pytest.raises(ValueError, match=r"folder .* does not exist"):
        ResumableTraining(tmp_path / "missing" / "npe.pt")
    with pytest.raises(ValueError, match="every_s"):
        ResumableTraining(tmp_path / "npe.pt", every_s=-1)
    with pytest.raises(TypeError, match="NPE and ratio trainers; got NLE"):
        with ResumableTraining(tmp_path / "npe.pt").attach(NLE(prior, tracker=NullTracker())):
            pass
    trainer, _ = _trainer("plain")
    with pytest.raises(TypeError, match="by keyword"):
        with ResumableTraining(tmp_path / "npe.pt").attach(trainer):
            trainer.train(1)
    with pytest.raises(ValueError, match="retrain_from_scratch"):
        with ResumableTraining(tmp_path / "npe.pt").attach(trainer):
            trainer.train(retrain_from_scratch=True)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="damaged"):
        ResumableTraining(tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not trained yet"):
        trainer_state(trainer)


def test_embed_emulate_cut_while_it_refines_resumes_to_the_uninterrupted_result(
    tmp_path, one_thread, monkeypatch
):
    """A cut in the refining phase (no save of its own) goes on from the last epoch's save."""
    whole, _ = _run("embed_emulate")
    real, calls = EmbedEmulate.refine, []

    def refine_cut_once(self, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the second phase's refining
            raise KeyboardInterrupt
        return real(self, **kwargs)

    monkeypatch.setattr(EmbedEmulate, "refine", refine_cut_once)
    with pytest.raises(KeyboardInterrupt):
        _run("embed_emulate", tmp_path / "ee.pt")
    resumed, saver = _run("embed_emulate", tmp_path / "ee.pt")
    _same_training(whole, resumed)
    assert saver.resumed == ["phase 1"] and resumed.refinement is not None
    loaded, again = _run("embed_emulate", tmp_path / "ee.pt")  # every phase loaded
    _same_training(whole, loaded)
    assert again.resumed == ["phase 1", "phase 2", "phase 3"]
    assert loaded.refinement == resumed.refinement


def test_a_state_goes_to_a_trainer_in_the_same_place(one_thread):
    first, _ = _trainer("plain")
    first.train(max_num_epochs=2, **BATCH)
    second, _ = _trainer("plain")
    load_trainer_state(second, trainer_state(first))
    torch.manual_seed(5)
    a = resume(first, max_num_epochs=2, **BATCH)
    torch.manual_seed(5)
    b = resume(second, max_num_epochs=2, **BATCH)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_each_member_has_its_files_and_they_go_together(tmp_path):
    from sbi_symmetry.workflow.registry import TrainingContext

    ctx = TrainingContext(None, torch.zeros(1), torch.zeros(1), None, {}, False, tmp_path)
    first, second = ctx.checkpoint("embed_emulate"), ctx.checkpoint("embed_emulate", member=1)
    assert (first.path.name, second.path.name) == (
        "progress_embed_emulate.pt",
        "progress_embed_emulate_member2.pt",
    )
    names = [
        "progress_embed_emulate.pt",
        "progress_embed_emulate.txt",
        "progress_embed_emulate_pretraining.pt",
        "progress_embed_emulate_member2.pt",
        "progress_embed_emulate_member2.txt",
        "progress_embed_emulate_member2_pretraining.pt",
        "progress_nre_c.pt",
        "progress_embed_emulate_notes.md",  # not a progress file of the method: kept
    ]
    for name in names:
        (tmp_path / name).write_text("")
    ctx.clear_progress("embed_emulate")
    assert sorted(p.name for p in tmp_path.iterdir()) == names[-1:] + names[-2:-1]


def _tiny_run(method: str):
    """A tiny run of one method alone, in this process (so patches reach it)."""
    from sbi_symmetry.workflow.config import RunConfig

    return RunConfig.from_preset(
        "damped-oscillator",
        "fast",
        num_simulations=500,
        num_observations=2,
        posterior_samples=200,
        sbc_pairs=20,
        sbc_posterior_samples=30,
        methods=(method,),
        workers=1,
        frozen_epochs=1,
        pretrain={"max_epochs": 2},
        npe_train={"max_num_epochs": 3, "anneal": 0.1},
        ee_train={"max_num_epochs": 3, "anneal": 0.1},
    )


@pytest.mark.slow
@pytest.mark.parametrize(("method", "cut_at"), [("symmetry_npe", 4), ("embed_emulate", 6)])
def test_a_run_cut_while_a_method_trains_resumes_to_the_same_numbers(
    tmp_path, monkeypatch, method, cut_at
):
    """Cut at the first save of phase 2 (symmetry NPE: after its frozen start; Embed and
    Emulate: after its first phase, refining included): the pretrained tower and phase 1 are
    loaded, not redone, and the numbers equal an uninterrupted run's."""
    from sbi_symmetry.workflow import pipeline, pretraining, registry

    cfg = _tiny_run(method)
    quiet = {"show_progress": False, "log": lambda _: None}
    whole = pipeline.run(cfg, tmp_path / "whole", **quiet)

    real, lines = registry.atomic_write_text, []

    def cut(path, text):
        real(path, text)
        lines.append(text)
        if len(lines) == cut_at:
            raise KeyboardInterrupt

    monkeypatch.setattr(registry, "SAVE_EVERY_S", 0.0)
    monkeypatch.setattr(registry, "atomic_write_text", cut)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(cfg, tmp_path / "cut", **quiet)
    stages = tmp_path / "cut" / ".stages"
    assert lines[cut_at - 2].startswith("phase 1 finished")
    assert lines[cut_at - 1].startswith("phase 2 saved at epoch")
    assert (stages / f"progress_{method}.pt").exists()

    def must_not_run(*args, **kwargs):
        raise AssertionError("pretrained again")

    later: list[str] = []
    monkeypatch.setattr(registry, "atomic_write_text", lambda path, text: later.append(text))
    monkeypatch.setattr(pretraining, "pretrain_vicreg", must_not_run)
    resumed = pipeline.run(cfg, tmp_path / "cut", resume=True, **quiet)
    assert later[0].startswith("phase 2 saved") and not any("phase 1" in line for line in later)
    after, before = resumed["methods"][method], whole["methods"][method]
    assert before["costs"]["pretrain_views"] == "shift"  # the tower was pretrained, then kept
    for key in ("c2st", "calibration"):
        assert after[key] == before[key], key
    for key in ("simulator_calls", "epochs_per_phase"):
        assert after["costs"][key] == before["costs"][key], key
    assert not list(stages.glob("progress_*"))  # the trained method is saved: progress removed


@pytest.mark.slow
def test_a_run_cut_while_symmetry_npe_pretrains_resumes_from_the_last_epoch(tmp_path, monkeypatch):
    from sbi_symmetry.workflow import pipeline, pretraining

    cfg = _tiny_run("symmetry_npe")
    quiet = {"show_progress": False, "log": lambda _: None}
    whole = pipeline.run(cfg, tmp_path / "whole", **quiet)
    real, epochs = pretraining.pretrain_vicreg, []

    def pretrain(*args, stop_at: int | None = None, **kwargs):
        def callback(epoch, history):
            epochs.append(epoch)
            if epoch == stop_at:
                raise KeyboardInterrupt

        return real(*args, callback=callback, **kwargs)

    monkeypatch.setattr(
        pretraining, "pretrain_vicreg", lambda *a, **k: pretrain(*a, stop_at=1, **k)
    )
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(cfg, tmp_path / "cut", **quiet)
    assert (tmp_path / "cut" / ".stages" / "progress_symmetry_npe_pretraining.pt").exists()
    monkeypatch.setattr(pretraining, "pretrain_vicreg", pretrain)
    epochs.clear()
    resumed = pipeline.run(cfg, tmp_path / "cut", resume=True, **quiet)
    assert epochs == [2]  # epoch 1 was loaded, not trained again
    assert resumed["methods"]["symmetry_npe"]["c2st"] == whole["methods"]["symmetry_npe"]["c2st"]
    assert not list((tmp_path / "cut" / ".stages").glob("progress_*"))
