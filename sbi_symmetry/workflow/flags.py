"""Flags: where a number of the report misleads on its own, said in one line next to it.

Each check reads the plain numbers a method's ``metrics.json`` entry holds (and its loss history)
and returns ``None`` or a flag: ``{"code", "summary", "explanation", "message"}`` (the summary
is this method's case, e.g. ``"calibrated but 10.2 x too wide in w0"``, the explanation what it
means; the message is both, for ``metrics.json``). :func:`notes` writes one line per kind of
flag, naming every method it concerns:

* ``epoch_cap``: sbi stopped the training at ``max_num_epochs`` (sbi 0.27 then has run
  ``max_num_epochs + 1`` epochs), not by early stopping, so the network may be under-trained;
* ``pretrain_epoch_cap``: VICReg pretraining ran all its epochs with the validation loss still
  falling;
* ``too_wide``: posteriors several times wider than the reference; SBC and coverage cannot see
  it (a posterior as wide as the prior is calibrated), so "calibrated" alone would mislead;
* ``sbc_pvalue``: an SBC p-value below 0.01 (it would print as 0.00): ranks far from uniform;
* ``below_cramer_rao``: std / Cramér-Rao below 1, which is no violation when the prior truncates
  the posterior (the bound ignores the prior);
* ``few_calibration_pairs``: SBC on fewer than :data:`FEW_PAIRS` pairs detects only gross errors;
* ``hardly_contracted``: without a reference, a calibrated posterior barely narrower than the
  prior.

Example:
    >>> entry = {"costs": {"epochs": 151}, "calibration": {"calibrated": True,
    ...          "ks_pvals": [0.3, 0.001], "num_pairs": 200},
    ...          "std_over_reference": [[10.0, 2.0], [10.4, 3.0]]}
    >>> [f["code"] for f in method_flags(entry, names=["w0", "beta"], max_epochs=150)]
    ['epoch_cap', 'too_wide', 'sbc_pvalue']
    >>> verdict(entry, ["w0", "beta"])
    'calibrated but 10.2 x too wide'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: A method is "too wide" when its mean std over the reference's exceeds this for a parameter.
TOO_WIDE = 2.0
#: SBC with fewer calibration pairs than this only detects gross miscalibration.
FEW_PAIRS = 100
#: Without a reference: a contraction below this counts as "hardly narrower than the prior".
LOW_CONTRACTION = 0.1
#: p-values below this print as "<0.01" and are flagged.
SMALL_P = 0.01

Flag = dict[str, str]
#: The heading of each kind of flag in the notes.
TITLES = {
    "epoch_cap": "Epoch cap",
    "pretrain_epoch_cap": "Pretraining cap",
    "too_wide": "Too wide",
    "below_cramer_rao": "std / Cramér-Rao below 1",
    "sbc_pvalue": "SBC p-value <0.01",
    "few_calibration_pairs": "Few calibration pairs",
    "hardly_contracted": "Hardly narrower than the prior",
}


def _flag(code: str, summary: str, explanation: str) -> Flag:
    return {
        "code": code,
        "summary": summary,
        "explanation": explanation,
        "message": f"{summary}. {explanation}",
    }


def notes(flagged: Mapping[str, Sequence[Flag]]) -> list[str]:
    """One line per kind of flag (and explanation): every method it concerns, then what it means.

    Args:
        flagged: Method label -> its flags.

    Returns:
        The lines, in order of first appearance.

    Example:
        >>> a = {"code": "few_calibration_pairs", "summary": "20 pairs", "explanation": "Weak."}
        >>> notes({"NPE": [a], "NRE": [{**a, "summary": "10 pairs"}]})
        ['Few calibration pairs. NPE: 20 pairs; NRE: 10 pairs. Weak.']
    """
    groups: dict[tuple[str, str], list[str]] = {}
    for method, found in flagged.items():
        for flag in found:
            key = (flag["code"], flag["explanation"])
            groups.setdefault(key, []).append(f"{method}: {flag['summary']}")
    return [
        f"{TITLES.get(code, code)}. {'; '.join(cases)}. {explanation}"
        for (code, explanation), cases in groups.items()
    ]


def _means(values: Sequence[Sequence[float]] | None) -> list[float] | None:
    """Per-parameter means over observations of ``[[v_param, ...], ...]``."""
    if not values:
        return None
    return [sum(col) / len(col) for col in zip(*values, strict=True)]


def _which(names: Sequence[str], indices: Sequence[int]) -> str:
    return ", ".join(names[i] for i in indices)


def widest(entry: Mapping[str, Any], names: Sequence[str]) -> tuple[float, str] | None:
    """The largest mean std / reference and its parameter, when above :data:`TOO_WIDE`.

    Example:
        >>> widest({"std_over_reference": [[1.1, 4.0], [0.9, 5.0]]}, ["a", "b"])
        (4.5, 'b')
    """
    means = _means(entry.get("std_over_reference"))
    if means is None:
        return None
    i = max(range(len(means)), key=means.__getitem__)
    return (means[i], names[i]) if means[i] > TOO_WIDE else None


def verdict(entry: Mapping[str, Any], names: Sequence[str]) -> str:
    """The calibration verdict of the table, with the width when it is misleading.

    Example:
        >>> verdict({"calibration": {"calibrated": False}}, ["a"])
        'NOT calibrated'
    """
    word = "calibrated" if entry["calibration"]["calibrated"] else "NOT calibrated"
    wide = widest(entry, names)
    if wide is None:
        return word
    return f"{word} {'but' if word == 'calibrated' else 'and'} {wide[0]:.1f} x too wide"


def epoch_cap(
    epochs: int, max_epochs: int | None, validation: Sequence[float] = (), setting: str = ""
) -> Flag | None:
    """Flag an sbi training that stopped at its cap (``epochs > max_num_epochs`` in sbi 0.27).

    Example:
        >>> print(epoch_cap(31, 30, [3.0, 2.0, 1.0], "npe_train")["summary"])
        31 epochs with `npe_train.max_num_epochs=30`, validation loss still falling, best at epoch 3
        >>> epoch_cap(12, 30) is None
        True
    """
    if max_epochs is None or epochs <= max_epochs:
        return None
    where = f"`{setting}.max_num_epochs={max_epochs}`" if setting else f"a cap of {max_epochs}"
    return _flag(
        "epoch_cap",
        f"{epochs} epochs with {where}{_trend(validation)}",
        "sbi stopped the training at its epoch cap, not by early stopping (sbi 0.27 runs "
        "max_num_epochs + 1 epochs): the numbers may reflect under-training rather than the "
        "method.",
    )


def pretrain_cap(validation: Sequence[float], max_epochs: int | None) -> Flag | None:
    """Flag VICReg pretraining that used all its epochs with the validation loss still falling.

    Example:
        >>> pretrain_cap([3.0, 2.0, 1.0], 3)["code"]
        'pretrain_epoch_cap'
        >>> pretrain_cap([1.0, 2.0, 3.0], 3) is None  # best long before the end
        True
    """
    if max_epochs is None or not validation or len(validation) < max_epochs:
        return None
    best = min(range(len(validation)), key=validation.__getitem__) + 1
    if best < len(validation) - max(1, len(validation) // 10) + 1:
        return None
    return _flag(
        "pretrain_epoch_cap",
        f"all {len(validation)} epochs of `pretrain.max_epochs={max_epochs}`, validation loss "
        f"still falling, best at epoch {best}",
        "VICReg pretraining ended at its epoch cap while still improving: the embedding may be "
        "under-trained.",
    )


def _trend(validation: Sequence[float]) -> str:
    if not validation:
        return ""
    best = min(range(len(validation)), key=validation.__getitem__) + 1
    if best >= len(validation) - max(1, len(validation) // 10) + 1:
        return f", validation loss still falling, best at epoch {best}"
    return f", best validation loss at epoch {best}"


def too_wide(entry: Mapping[str, Any], names: Sequence[str]) -> Flag | None:
    """Flag posteriors more than :data:`TOO_WIDE` times wider than the reference.

    With the central 90% intervals in ``entry``, the summary gives the interval's ratio too and
    says whether the bulk is wide (interval over :data:`TOO_WIDE`) or the std comes from a small
    mass far away (interval under two thirds of the std's ratio).

    Example:
        >>> entry = {"calibration": {"calibrated": True}, "std_over_reference": [[4.0, 1.0]],
        ...          "interval_over_reference": [[1.2, 1.0]]}
        >>> print(too_wide(entry, ["a", "b"])["summary"])
        calibrated but 4.0 x too wide in a (central 90% interval 1.2 x: a small mass far away)
    """
    wide = widest(entry, names)
    if wide is None:
        return None
    summary = f"{verdict(entry, names)} in {wide[1]}"
    intervals = _means(entry.get("interval_over_reference"))
    if intervals is not None:
        ratio = intervals[names.index(wide[1])]
        if ratio > TOO_WIDE:
            cause = ": the bulk is wide too"
        elif ratio < wide[0] / 1.5:  # the std well above what the interval of the bulk says
            cause = ": a small mass far away"
        else:
            cause = ""
        summary += f" (central 90% interval {ratio:.1f} x{cause})"
    return _flag(
        "too_wide",
        summary,
        "Posterior std over the reference's, mean over observations, for the widest parameter. "
        "SBC and coverage cannot see excess width (a posterior as wide as the prior is "
        "calibrated too); C2ST and std / reference can.",
    )


def sbc_pvalues(ks_pvals: Sequence[float], names: Sequence[str]) -> Flag | None:
    """Flag SBC p-values below 0.01 (printed ``<0.01``, never a bare ``0.00``).

    Example:
        >>> sbc_pvalues([0.2, 1e-5], ["a", "b"])["summary"]
        'b'
    """
    small = [i for i, p in enumerate(ks_pvals) if p < SMALL_P]
    if not small:
        return None
    return _flag(
        "sbc_pvalue",
        _which(names, small),
        "The SBC ranks of that parameter are far from uniform (a p-value that would print as "
        "0.00): the posterior is miscalibrated in it. sbc_ranks.png shows how: a U shape is too "
        "narrow, a hump too wide, a slope biased.",
    )


def below_cramer_rao(entry: Mapping[str, Any], names: Sequence[str]) -> Flag | None:
    """Explain a mean std / Cramér-Rao below 1 (prior truncation, or overconfidence)."""
    crb = _means(entry.get("std_over_crb"))
    if crb is None:
        return None
    low = [i for i, v in enumerate(crb) if v < 1.0]
    if not low:
        return None
    ref = _means(entry.get("std_over_reference"))
    refs = [None if ref is None else crb[i] / ref[i] for i in low]  # the reference's std / bound
    summary = ", ".join(
        f"{names[i]} {crb[i]:.2f}" + ("" if r is None else f", reference {r:.2f}")
        for i, r in zip(low, refs, strict=True)
    )
    if any(r is not None and r >= 1.0 for r in refs):
        return _flag(
            "below_cramer_rao",
            summary,
            "Narrower than the Cramér-Rao bound where the reference is not: narrower than the "
            "data allow, i.e. overconfident.",
        )
    return _flag(
        "below_cramer_rao",
        summary,
        "The prior truncates the posterior, so the bound, which ignores the prior, can exceed "
        "the posterior width: below 1 is no violation.",
    )


def few_pairs(num_pairs: int) -> Flag | None:
    """Flag calibration measured on fewer than :data:`FEW_PAIRS` pairs."""
    if num_pairs >= FEW_PAIRS:
        return None
    return _flag(
        "few_calibration_pairs",
        f"{num_pairs} pairs",
        f"SBC and coverage on fewer than {FEW_PAIRS} pairs detect only gross errors: read "
        "'calibrated' as 'not rejected'.",
    )


def hardly_contracted(entry: Mapping[str, Any], names: Sequence[str]) -> Flag | None:
    """Without a reference: flag a calibrated posterior barely narrower than the prior."""
    if entry.get("std_over_reference") or not entry["calibration"]["calibrated"]:
        return None
    means = _means(entry.get("contraction"))
    low = [i for i, c in enumerate(means or []) if c < LOW_CONTRACTION]
    if not low:
        return None
    values = ", ".join(f"{names[i]} {means[i]:.2f}" for i in low)  # type: ignore[index]
    return _flag(
        "hardly_contracted",
        f"calibrated, contraction {values}",
        "Contraction is 1 - posterior variance / prior variance, mean over observations: a "
        "posterior as wide as the prior passes SBC too, so 'calibrated' says little here.",
    )


def method_flags(
    entry: Mapping[str, Any],
    *,
    names: Sequence[str],
    max_epochs: int | None = None,
    setting: str = "",
    history: Mapping[str, Sequence[float]] | None = None,
    pretrain_max_epochs: int | None = None,
) -> list[Flag]:
    """Every flag of one method, in the order of the table's columns.

    Args:
        entry: The method's ``metrics.json`` entry (``costs``, ``calibration``, widths).
        names: Parameter names, in order.
        max_epochs: The ``max_num_epochs`` sbi trained it with (``None``: no cap).
        setting: The config field that holds ``max_num_epochs`` (for the message).
        history: Its loss curves (``validation``; ``pretrain_val_total`` for pretraining).
        pretrain_max_epochs: Pretraining's ``max_epochs`` (``None``: no pretraining).

    Returns:
        The flags, each ``{"code", "summary", "explanation", "message"}``.
    """
    history = history or {}
    cal = entry["calibration"]
    found = [
        epoch_cap(
            int(entry["costs"]["epochs"]), max_epochs, history.get("validation", ()), setting
        ),
        pretrain_cap(history.get("pretrain_val_total", ()), pretrain_max_epochs),
        too_wide(entry, names),
        below_cramer_rao(entry, names),
        sbc_pvalues(cal["ks_pvals"], names),
        few_pairs(int(cal.get("num_pairs", FEW_PAIRS))),
        hardly_contracted(entry, names),
    ]
    return [flag for flag in found if flag is not None]
