"""Methods train from their own random streams, in turn or side by side (workflow.parallel)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch
from _helpers_parallel import draws, slow_draws
from hypothesis import given
from hypothesis import strategies as st

from sbi_symmetry._random import derived_seed
from sbi_symmetry.simulation.counting import count_simulator_calls
from sbi_symmetry.tasks import DampedOscillator
from sbi_symmetry.workflow import parallel, stages
from sbi_symmetry.workflow.config import RunConfig
from sbi_symmetry.workflow.registry import METHODS
from sbi_symmetry.workflow.trained import TrainedMethod


@given(st.integers(0, 2**40), st.text(max_size=20), st.text(max_size=20))
def test_derived_seeds_are_fixed_by_seed_and_labels(seed, a, b):
    first = derived_seed(seed, "method", a)
    assert first == derived_seed(seed, "method", a) and 0 <= first < 2**31
    if a != b:  # 31 bits: a collision would be a 1-in-2e9 accident, not a property
        assert first != derived_seed(seed, "method", b)


@pytest.fixture
def standins(monkeypatch):
    """Every method's training replaced by `draws` (importable, so workers can run it)."""
    for name in METHODS:
        monkeypatch.setitem(METHODS, name, dataclasses.replace(METHODS[name], train=draws))


def _trained(
    methods: tuple[str, ...], workers: int, seed: int = 0, *, done=None, meanwhile=None, **settings
) -> dict:
    cfg = RunConfig.from_preset(
        "damped-oscillator", methods=methods, workers=workers, seed=seed, **settings
    )
    task = count_simulator_calls(DampedOscillator())
    sims = stages.Simulations(*[torch.zeros(1)] * 7)
    torch.manual_seed(0)
    ctx = stages.training_context(task, sims, cfg, show_progress=False)
    return stages.train_methods(ctx, "npe", done=done, meanwhile=meanwhile)


def test_a_method_draws_the_same_alone_or_beside_others(standins):
    both = _trained(("symmetry_npe", "end_to_end_npe"), workers=1)
    alone = _trained(("end_to_end_npe",), workers=1)
    assert torch.equal(
        both["end_to_end_npe"].extra["draws"], alone["end_to_end_npe"].extra["draws"]
    )
    assert not torch.equal(
        both["symmetry_npe"].extra["draws"], both["end_to_end_npe"].extra["draws"]
    )
    other_seed = _trained(("end_to_end_npe",), workers=1, seed=1)
    assert not torch.equal(
        other_seed["end_to_end_npe"].extra["draws"], alone["end_to_end_npe"].extra["draws"]
    )


def test_a_training_seed_changes_the_training_streams_only(standins):
    def drawn(**settings):
        return _trained(("raw_npe",), workers=1, **settings)["raw_npe"].extra["draws"]

    assert torch.equal(drawn(seed=4, training_seed=4), drawn(seed=4))
    assert torch.equal(drawn(seed=0, training_seed=4), drawn(seed=4))  # data seed aside
    assert not torch.equal(drawn(seed=0, training_seed=1), drawn(seed=0))
    with pytest.raises(ValueError, match="training_seed"):
        RunConfig.from_preset("damped-oscillator", training_seed=-1)


def test_training_leaves_the_callers_stream_where_it_was(standins):
    cfg = RunConfig.from_preset("damped-oscillator", methods=("raw_npe",), workers=1)
    sims = stages.Simulations(*[torch.zeros(1)] * 7)
    ctx = stages.training_context(DampedOscillator(), sims, cfg, show_progress=False)
    before = torch.get_rng_state()
    stages.train_methods(ctx, "npe")
    assert torch.equal(torch.get_rng_state(), before)


def test_workers_train_side_by_side_with_the_same_streams(standins):
    names = ("symmetry_npe", "raw_npe", "end_to_end_npe")
    in_turn = _trained(names, workers=1)
    side_by_side = _trained(names, workers=2)
    assert list(side_by_side) == list(names)
    for name in names:
        got = side_by_side[name].extra
        assert torch.equal(got["draws"], in_turn[name].extra["draws"])
        assert got["pid"] != os.getpid()
        assert got["threads"] == max(1, torch.get_num_threads() // 2)
        assert got["simulator_calls"] == {"training_set": 1, "views": 2, "total": 3}


def test_the_rest_of_an_interrupted_run_trains_at_the_whole_runs_thread_count(standins):
    """A resumed run (methods loaded, ``skip``) keeps each method's worker and threads."""
    names = ("symmetry_npe", "raw_npe", "end_to_end_npe")
    cfg = RunConfig.from_preset("damped-oscillator", methods=names, workers=0)
    sims = stages.Simulations(*[torch.zeros(1)] * 7)
    ctx = stages.training_context(DampedOscillator(), sims, cfg, show_progress=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        whole = stages.train_methods(ctx, "npe")
        rest = stages.train_methods(ctx, "npe", skip={"symmetry_npe", "raw_npe"})
    finally:
        torch.set_num_threads(before)
    assert list(rest) == ["end_to_end_npe"]
    got, expected = rest["end_to_end_npe"].extra, whole["end_to_end_npe"].extra
    assert got["threads"] == expected["threads"] == 1 and got["pid"] != os.getpid()
    assert torch.equal(got["draws"], expected["draws"])
    assert stages.train_methods(ctx, "npe", skip=set(names)) == {}


def test_methods_that_cannot_go_to_a_worker_train_in_turn_with_a_warning(monkeypatch):
    def closure(ctx):  # a function defined here cannot be pickled
        return draws(ctx)

    spec = dataclasses.replace(METHODS["raw_npe"], train=closure)
    monkeypatch.setitem(METHODS, "raw_npe", spec)
    monkeypatch.setitem(METHODS, "symmetry_npe", dataclasses.replace(spec, name="symmetry_npe"))
    with pytest.warns(UserWarning, match="training the methods in turn"):
        trained = _trained(("symmetry_npe", "raw_npe"), workers=2)
    assert {m.extra["pid"] for m in trained.values()} == {os.getpid()}


@pytest.mark.parametrize("jobs", [1, 2, 3, 5, 64])
def test_by_default_every_method_gets_a_worker_on_cpu_and_one_trains_at_a_time_on_a_gpu(jobs):
    """More methods than cores still start together: the cores are shared, none idles."""
    assert parallel.resolve_workers(0, jobs=jobs, device="cpu") == jobs
    assert parallel.resolve_workers(0, jobs=jobs, device="cuda") == 1
    assert parallel.resolve_workers(2, jobs=jobs, device="cpu") == min(2, jobs)


def test_light_methods_start_last_and_the_others_keep_their_order():
    names = ["raw_npe", "embed_emulate", "symmetry_npe", "nre_c", "end_to_end_npe"]
    order = [spec.name for spec in parallel.start_order([METHODS[n] for n in names])]
    assert order == ["embed_emulate", "symmetry_npe", "nre_c", "end_to_end_npe", "raw_npe"]
    assert [name for name, spec in METHODS.items() if spec.light] == ["raw_npe"]


def test_workers_must_be_a_non_negative_integer():
    assert parallel.resolve_workers(3, jobs=1, device="cpu") == 1
    with pytest.raises(ValueError, match="workers"):
        RunConfig.from_preset("damped-oscillator", workers=-1)


class _GlobalStreamPosterior:
    """Samples from torch's global generator, as sbi's samplers do; ``waste`` extra draws first."""

    def __init__(self, waste: int) -> None:
        self.waste = waste

    def sample(self, shape, x, show_progress_bars=False):
        torch.rand(self.waste)  # e.g. rejected samples: how many depends on the posterior
        return torch.rand(*shape, 2)


class _PriorOnly:
    def sample_prior(self, num, generator=None):
        return torch.rand(num, 2, generator=generator)


def test_each_method_samples_the_observations_from_its_own_stream():
    config = RunConfig.from_preset("damped-oscillator", "fast", posterior_samples=20)
    x_o = torch.zeros(config.num_observations, 64)
    sims = stages.Simulations(*[torch.zeros(1)] * 3, torch.zeros(1, 1), x_o, torch.zeros(1), x_o)

    def method(name: str, waste: int) -> TrainedMethod:
        history = {"train": [0.0], "validation": [0.0]}
        posterior = _GlobalStreamPosterior(waste)
        return TrainedMethod(name, posterior, torch.nn.Identity(), 1.0, 0.0, 1, 1, 1, 1, history)

    def samples(*methods: TrainedMethod) -> dict:
        trained = {m.name: m for m in methods}
        gen = torch.Generator().manual_seed(0)
        return stages.accuracy(_PriorOnly(), sims, trained, [], config, gen, False).samples

    alone = samples(method("raw_npe", 0))["raw_npe"]
    for waste in (0, 7, 1000):  # the method sampled before it drew more or fewer numbers
        after = samples(method("symmetry_npe", waste), method("raw_npe", 0))
        assert all(torch.equal(a, b) for a, b in zip(alone, after["raw_npe"], strict=True))
    assert not torch.equal(alone[0], after["symmetry_npe"][0])  # and the streams differ


@pytest.fixture
def one_slow(monkeypatch, tmp_path):
    """Stand-ins again; symmetry NPE's finishes only once ``tmp_path / "go"`` exists (made by
    the work beside training: proof that the two overlapped); two torch threads."""
    monkeypatch.setenv("SLOW_DRAWS_UNTIL", str(tmp_path / "go"))
    for name in METHODS:
        fake = slow_draws if name == "symmetry_npe" else draws
        monkeypatch.setitem(METHODS, name, dataclasses.replace(METHODS[name], train=fake))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _side_by_side(meanwhile, done=None) -> dict:
    """Both stand-ins, each in a worker of its own (workers=0), with work beside them."""
    return _trained(("symmetry_npe", "raw_npe"), workers=0, done=done, meanwhile=meanwhile)


def test_work_beside_training_starts_when_a_core_idles_with_the_idle_threads(one_slow):
    finished, seen = [], []

    def meanwhile():
        seen.append((list(finished), torch.get_num_threads(), os.getpid()))
        Path(os.environ["SLOW_DRAWS_UNTIL"]).touch()  # now symmetry NPE may finish

    trained = _side_by_side(meanwhile, done=lambda name, method: finished.append(name))
    assert seen == [(["raw_npe"], 1, os.getpid())]  # symmetry NPE still trained on one core
    assert finished == ["raw_npe", "symmetry_npe"] and torch.get_num_threads() == 2
    assert trained["symmetry_npe"].extra["pid"] != os.getpid()


def test_work_beside_training_fails_after_every_method_is_kept(one_slow):
    finished = []

    def meanwhile():
        Path(os.environ["SLOW_DRAWS_UNTIL"]).touch()
        raise RuntimeError("the reference failed")

    with pytest.raises(RuntimeError, match="the reference failed"):
        _side_by_side(meanwhile, done=lambda name, method: finished.append(name))
    assert sorted(finished) == ["raw_npe", "symmetry_npe"]


def test_no_work_beside_training_when_the_methods_train_in_turn(standins):
    _trained(("raw_npe",), workers=1, meanwhile=lambda: pytest.fail("nothing to overlap"))
