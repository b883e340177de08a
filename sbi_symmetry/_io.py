"""File writing and version stamps shared by every module that saves something.

One durability rule for every file the package writes: the bytes go to a temporary file in the
target's folder, are flushed and ``fsync``-ed, and the temporary file is renamed over the target
(``os.replace``), so a reader or a crash sees the old file or the new one, never half of one.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> atomic_write(folder / "a.txt", lambda handle: handle.write(b"hello"))
    >>> (folder / "a.txt").read_bytes()
    b'hello'
    >>> sorted(versions())[:2]
    ['python', 'sbi']
"""

from __future__ import annotations

import os
import platform
import uuid
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import IO, Any


def atomic_write(target: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Write ``target`` atomically: ``write(handle)`` fills a temporary file that replaces it.

    Args:
        target: The file to (re)place.
        write: Called with a binary file handle open on the temporary file.
    """
    target = Path(target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(target: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``target`` atomically (see :func:`atomic_write`).

    Args:
        target: The file to (re)place.
        text: Its new content.
    """
    atomic_write(target, lambda handle: handle.write(text.encode("utf-8")))


def versions() -> dict[str, str]:
    """Versions of this package, sbi, torch and Python, for files that must say what wrote them.

    Returns:
        ``{"sbi_symmetry", "sbi", "torch", "python"}`` to version strings.
    """
    import torch

    def installed(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:  # pragma: no cover - an uninstalled checkout
            return "unknown"

    return {
        "sbi_symmetry": installed("sbi-symmetry"),
        "sbi": installed("sbi"),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
