"""The report's flags: where a number misleads on its own, said next to it (epoch caps, too wide
posteriors and whether their bulk or a far speck is wide, tiny SBC p-values, widths below the
Cramér-Rao bound, few calibration pairs), and the notes that group them over methods."""

from __future__ import annotations

from sbi_symmetry.workflow import flags
from sbi_symmetry.workflow.plots import format_pvalue
from sbi_symmetry.workflow.report import notes

NAMES = ["w0", "beta"]


def _entry(**changes):
    entry = {
        "costs": {"epochs": 40},
        "calibration": {"calibrated": True, "ks_pvals": [0.4, 0.3], "num_pairs": 200},
        "std_over_reference": [[1.1, 0.9], [1.0, 1.2]],
        "std_over_crb": [[1.3, 1.1], [1.2, 1.4]],
    }
    entry.update(changes)
    return entry


def test_a_good_method_raises_no_flag_and_the_notes_say_so():
    assert flags.method_flags(_entry(), names=NAMES, max_epochs=150) == []
    assert flags.verdict(_entry(), NAMES) == "calibrated"
    assert notes({"raw_npe": {"flags": []}})[0].startswith("No number in the table")


def test_a_training_that_hit_its_epoch_cap_is_flagged():
    # sbi 0.27 runs max_num_epochs + 1 epochs when it stops at the cap
    history = {"validation": [3.0, 2.0, 1.5, 1.2]}
    found = flags.method_flags(
        _entry(costs={"epochs": 151}),
        names=NAMES,
        max_epochs=150,
        history=history,
        setting="npe_train",
    )
    assert [f["code"] for f in found] == ["epoch_cap"]
    assert "151 epochs with `npe_train.max_num_epochs=150`" in found[0]["summary"]
    assert "still falling" in found[0]["summary"]
    assert flags.method_flags(_entry(costs={"epochs": 150}), names=NAMES, max_epochs=150) == []
    assert flags.epoch_cap(151, None) is None  # no cap configured


def test_pretraining_at_its_cap_is_flagged_only_while_still_improving():
    assert flags.pretrain_cap([5.0, 4.0, 3.0, 2.0], 4)["code"] == "pretrain_epoch_cap"
    assert flags.pretrain_cap([5.0, 1.0, 3.0, 2.0], 4) is None
    assert flags.pretrain_cap([5.0, 4.0], 4) is None  # stopped early


def test_calibrated_but_too_wide_is_said_in_the_verdict_and_the_flag():
    entry = _entry(std_over_reference=[[10.0, 2.0], [10.4, 3.0]])
    assert flags.verdict(entry, NAMES) == "calibrated but 10.2 x too wide"
    (flag,) = [f for f in flags.method_flags(entry, names=NAMES) if f["code"] == "too_wide"]
    assert flag["summary"] == "calibrated but 10.2 x too wide in w0"
    bad = {**entry, "calibration": {**entry["calibration"], "calibrated": False}}
    assert flags.verdict(bad, NAMES) == "NOT calibrated and 10.2 x too wide"
    just = _entry(std_over_reference=[[1.9, 2.0]])  # 2.0 is not "several times"
    assert flags.verdict(just, NAMES) == "calibrated"


def test_the_too_wide_flag_tells_a_wide_bulk_from_a_far_speck():
    entry = _entry(std_over_reference=[[4.0, 1.0], [2.0, 1.0]])
    (flag,) = flags.method_flags(entry, names=NAMES)  # older metrics: no interval, no remark
    assert flag["summary"] == "calibrated but 3.0 x too wide in w0"
    speck = {**entry, "interval_over_reference": [[1.1, 0.9], [1.3, 1.0]]}
    assert flags.too_wide(speck, NAMES)["summary"].endswith(
        "in w0 (central 90% interval 1.2 x: a small mass far away)"
    )
    bulk = {**entry, "interval_over_reference": [[4.1, 0.9], [2.1, 1.0]]}
    assert flags.too_wide(bulk, NAMES)["summary"].endswith(
        "(central 90% interval 3.1 x: the bulk is wide too)"
    )
    neither = {**entry, "interval_over_reference": [[2.2, 0.9], [1.8, 1.0]]}  # 2.0 of 3.0
    assert flags.too_wide(neither, NAMES)["summary"].endswith("(central 90% interval 2.0 x)")
    assert flags.verdict(speck, NAMES) == flags.verdict(entry, NAMES)  # the verdict is the std's


def test_tiny_sbc_p_values_print_as_below_001_and_are_explained():
    assert format_pvalue(0.0) == "<0.01" and format_pvalue(0.004) == "<0.01"
    assert format_pvalue(0.05) == "0.05"
    calibration = {"calibrated": False, "ks_pvals": [0.3, 1e-6], "num_pairs": 200}
    found = flags.method_flags(_entry(calibration=calibration), names=NAMES)
    assert [f["code"] for f in found] == ["sbc_pvalue"]
    assert found[0]["summary"] == "beta"
    assert "far from uniform" in found[0]["explanation"]
    assert "miscalibrated" in found[0]["explanation"]


def test_std_below_cramer_rao_is_explained_by_the_prior_or_called_overconfident():
    # the reference is below the bound too: the prior truncates the posterior
    entry = _entry(std_over_crb=[[0.8, 1.2]], std_over_reference=[[1.0, 1.0]])
    (flag,) = flags.method_flags(entry, names=NAMES)
    assert flag["code"] == "below_cramer_rao" and "w0 0.80" in flag["summary"]
    assert "prior truncates the posterior" in flag["explanation"]
    # the reference is above the bound but the method is below it: overconfident
    entry = _entry(std_over_crb=[[0.8, 1.2]], std_over_reference=[[0.5, 1.0]])
    (flag,) = flags.method_flags(entry, names=NAMES)
    assert "overconfident" in flag["explanation"]


def test_few_pairs_and_prior_wide_posteriors_without_a_reference_are_flagged():
    entry = {
        "costs": {"epochs": 3},
        "calibration": {"calibrated": True, "ks_pvals": [0.5, 0.5], "num_pairs": 30},
        "contraction": [[0.02, 0.6], [0.04, 0.7]],
    }
    codes = [f["code"] for f in flags.method_flags(entry, names=NAMES)]
    assert codes == ["few_calibration_pairs", "hardly_contracted"]


def test_notes_group_one_kind_of_flag_over_methods():
    wide = _entry(std_over_reference=[[10.0, 2.0]])
    methods = {
        "symmetry_npe": {"flags": flags.method_flags(wide, names=NAMES)},
        "raw_npe": {"flags": flags.method_flags(wide, names=NAMES)},
    }
    (line,) = notes(methods)
    assert line.startswith("Too wide. symmetry NPE: calibrated but 10.0 x too wide in w0; ")
    assert "NPE (raw data): calibrated but 10.0 x too wide in w0" in line
