"""Small adapters for sbi 0.27 internals that users of this package should not have to know.

Example:
    >>> tracker = NullTracker()
    >>> tracker.log_metric("loss", 1.0)
    >>> tracker.log_dir is None
    True
"""

from __future__ import annotations

from typing import Any


class NullTracker:
    """An sbi ``Tracker`` that records nothing, so training writes no ``./sbi-logs`` folder.

    Pass it as ``tracker=NullTracker()`` to any sbi trainer (``NPE``, ``NRE_C``, ...).
    """

    @property
    def log_dir(self) -> None:
        """No directory: nothing is written."""
        return None

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        """Ignore one metric."""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Ignore several metrics."""

    def log_params(self, params: dict[str, Any]) -> None:
        """Ignore parameters."""

    def add_figure(self, name: str, figure: Any, step: int | None = None) -> None:
        """Ignore a figure."""

    def flush(self) -> None:
        """Nothing to flush."""
