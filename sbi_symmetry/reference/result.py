"""The result of a reference-posterior run: samples, evidence, cost, settings; saved as ``.npz``.

One file holds everything: the samples as a float32 array and the scalar fields and settings as
a JSON string (no pickles, so loading never executes code).

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> import torch
    >>> ref = ReferencePosterior(torch.zeros(3, 2), -1.5, 0.0, "quadrature", 0.1, 10, {"M": 4})
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = ref.save(Path(folder) / "ref.npz")
    ...     ReferencePosterior.load(path).settings
    {'M': 4}
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sbi_symmetry._io import atomic_write
from sbi_symmetry._validation import check_choice

#: Version of the on-disk layout, stored in every file.
FORMAT_VERSION = 1
METHODS = ("quadrature", "dynesty")


@dataclass(frozen=True, eq=False)
class ReferencePosterior:
    """Posterior samples of ``theta`` (shift marginalised) with the evidence and cost of the run.

    Attributes:
        samples: Float32 tensor of shape ``(num_samples, theta_dim)``.
        log_evidence: ``log Z``, the log of the integral of likelihood times prior, with the
            full Gaussian normalisation of ``task.log_likelihood``.
        log_evidence_error: Estimated numerical error of ``log_evidence`` (dynesty's error bar,
            or the quadrature's last-refinement change).
        method: ``"quadrature"`` or ``"dynesty"``.
        wall_time_s: Wall-clock time of the run that produced the samples (not of a cache load).
        num_likelihood_evaluations: Likelihood evaluations ``p(x_o | theta, shift)`` used.
        settings: Inputs and diagnostics of the run (JSON-serialisable).
    """

    samples: Tensor
    log_evidence: float
    log_evidence_error: float
    method: str
    wall_time_s: float
    num_likelihood_evaluations: int
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.samples, Tensor) or self.samples.ndim != 2:
            raise ValueError(
                "`samples` must be a tensor of shape (num_samples, theta_dim); got "
                f"{getattr(self.samples, 'shape', type(self.samples).__name__)}."
            )
        check_choice(self.method, "method", METHODS)
        if not math.isfinite(self.log_evidence):
            raise ValueError(f"`log_evidence` must be finite; got {self.log_evidence!r}.")
        object.__setattr__(self, "samples", self.samples.detach().to("cpu", torch.float32))

    def _metadata(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "log_evidence": float(self.log_evidence),
            "log_evidence_error": float(self.log_evidence_error),
            "method": self.method,
            "wall_time_s": float(self.wall_time_s),
            "num_likelihood_evaluations": int(self.num_likelihood_evaluations),
            "settings": self.settings,
        }

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the result to one ``.npz`` file.

        Args:
            path: Destination; must end in ``.npz``.
            overwrite: Replace an existing file. Without it an existing file raises.

        Returns:
            The path written.
        """
        path = Path(path)
        if path.suffix != ".npz":
            raise ValueError(f"`path` must end in .npz; got {str(path)!r}.")
        if path.exists() and not overwrite:
            raise FileExistsError(
                f"`path` {str(path)!r} already exists; pass overwrite=True to replace it."
            )
        metadata = json.dumps(self._metadata(), sort_keys=True)
        # Written next to the target, then renamed: readers never see a half-written file.
        atomic_write(
            path,
            lambda handle: np.savez(
                handle, samples=self.samples.numpy(), metadata=np.array(metadata)
            ),
        )
        return path

    @classmethod
    def load(cls, path: str | Path) -> ReferencePosterior:
        """Read a result written by :meth:`save`.

        Args:
            path: A ``.npz`` file written by :meth:`save`.

        Returns:
            The stored result.
        """
        path = Path(path)
        with np.load(path, allow_pickle=False) as data:
            if "samples" not in data or "metadata" not in data:
                raise ValueError(f"{str(path)!r} is not a saved ReferencePosterior.")
            samples = torch.from_numpy(data["samples"].astype(np.float32))
            meta = json.loads(str(data["metadata"]))
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{str(path)!r} has format version {meta.get('format_version')!r}; this "
                f"version of sbi_symmetry reads version {FORMAT_VERSION}."
            )
        return cls(
            samples=samples,
            log_evidence=meta["log_evidence"],
            log_evidence_error=meta["log_evidence_error"],
            method=meta["method"],
            wall_time_s=meta["wall_time_s"],
            num_likelihood_evaluations=meta["num_likelihood_evaluations"],
            settings=meta["settings"],
        )
