"""Saving and loading a symmetry embedding, without pickled code.

A saved embedding is a folder with ``weights.pt`` (the ``state_dict``, read back with
``weights_only=True``) and ``config.json`` (format, encoder class and constructor settings, input
scaling, freeze mode, versions, pretraining history). ``load`` rebuilds only encoder classes named
in :data:`KNOWN_ENCODERS`; any other architecture is passed in as ``encoder=``. Files are written
atomically (:func:`sbi_symmetry._io.atomic_write`).

Example:
    >>> import tempfile
    >>> from sbi_symmetry.nets import ConvEncoder1D
    >>> from sbi_symmetry.symmetry.embedding import SymmetryEmbedding
    >>> folder = tempfile.mkdtemp()
    >>> SymmetryEmbedding(ConvEncoder1D(32, 2, channels=2, num_blocks=1)).save(folder)
    >>> SymmetryEmbedding.load(folder).output_dim
    2
"""

from __future__ import annotations

import importlib
import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from sbi_symmetry._io import atomic_write, atomic_write_text, versions

if TYPE_CHECKING:
    from sbi_symmetry.symmetry.embedding import FreezeMode, SymmetryEmbedding

#: Encoder classes that :meth:`SymmetryEmbedding.load` may rebuild from ``config.json`` alone,
#: by qualified name -> (module, class). Nothing outside this table is ever imported by ``load``.
KNOWN_ENCODERS: dict[str, tuple[str, str]] = {
    "sbi_symmetry.nets.conv.ConvEncoder1D": ("sbi_symmetry.nets.conv", "ConvEncoder1D"),
}

WEIGHTS_FILE = "weights.pt"
CONFIG_FILE = "config.json"
_FORMAT = "sbi_symmetry.SymmetryEmbedding"
_FORMAT_VERSION = 1


def save_embedding(
    self: SymmetryEmbedding, path: str | os.PathLike[str], *, overwrite: bool = False
) -> None:
    """Write ``path/weights.pt`` and ``path/config.json`` (see :meth:`SymmetryEmbedding.save`).

    Args:
        self: The embedding.
        path: A folder; created if missing.
        overwrite: Replace existing files.

    Example:
        >>> import tempfile
        >>> from sbi_symmetry.nets import ConvEncoder1D
        >>> from sbi_symmetry.symmetry.embedding import SymmetryEmbedding
        >>> folder = Path(tempfile.mkdtemp())
        >>> save_embedding(SymmetryEmbedding(ConvEncoder1D(16, 2, num_blocks=1)), folder)
        >>> sorted(p.name for p in folder.iterdir())
        ['config.json', 'weights.pt']
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"`path` must be a folder; {folder} is a file.")
    targets = [folder / WEIGHTS_FILE, folder / CONFIG_FILE]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"Refusing to overwrite {', '.join(existing)}; pass overwrite=True or choose "
            "another folder."
        )
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
    atomic_write(targets[0], lambda f: torch.save(state, f))
    atomic_write_text(targets[1], json.dumps(embedding_config(self), indent=2))


def embedding_config(self: SymmetryEmbedding) -> dict[str, Any]:
    """The JSON content of ``config.json`` for an embedding.

    Args:
        self: The embedding.

    Returns:
        A JSON-serialisable dictionary.

    Example:
        >>> from sbi_symmetry.nets import ConvEncoder1D
        >>> from sbi_symmetry.symmetry.embedding import SymmetryEmbedding
        >>> config = embedding_config(SymmetryEmbedding(ConvEncoder1D(16, 2, num_blocks=1)))
        >>> config["encoder_class"], {"sbi_symmetry", "sbi", "torch"} <= set(config["versions"])
        ('sbi_symmetry.nets.conv.ConvEncoder1D', True)
    """
    cls = type(self.encoder)
    encoder_config = getattr(self.encoder, "config", None)
    if encoder_config is not None:
        try:
            json.dumps(encoder_config)
        except TypeError:
            warnings.warn(
                f"{cls.__name__}.config is not JSON-serialisable; it is not saved, so load() "
                "will need `encoder=`.",
                UserWarning,
                stacklevel=4,
            )
            encoder_config = None
    return {
        "format": _FORMAT,
        "format_version": _FORMAT_VERSION,
        "encoder_class": f"{cls.__module__}.{cls.__qualname__}",
        "encoder_config": encoder_config,
        "freeze": self._freeze,
        "input_mean": self.input_mean.tolist(),
        "input_std": self.input_std.tolist(),
        "output_dim": self._output_dim,
        "versions": versions(),
        "history": self.history,
    }


def load_embedding(
    cls: type[SymmetryEmbedding],
    path: str | os.PathLike[str],
    *,
    encoder: nn.Module | None = None,
    map_location: str | torch.device = "cpu",
    freeze: FreezeMode | None = None,
) -> SymmetryEmbedding:
    """Rebuild an embedding written by :func:`save_embedding` (see :meth:`SymmetryEmbedding.load`).

    Args:
        cls: The embedding class to build.
        path: The folder given to ``save``.
        encoder: An encoder with the saved architecture, for classes not in
            :data:`KNOWN_ENCODERS`.
        map_location: Device the weights are loaded onto.
        freeze: Freeze mode of the result; the saved mode when omitted.

    Returns:
        The embedding, in eval mode, on ``map_location``.

    Example:
        >>> import tempfile
        >>> from sbi_symmetry.nets import ConvEncoder1D
        >>> from sbi_symmetry.symmetry.embedding import SymmetryEmbedding
        >>> folder = tempfile.mkdtemp()
        >>> SymmetryEmbedding(ConvEncoder1D(16, 2, num_blocks=1), freeze="all").save(folder)
        >>> load_embedding(SymmetryEmbedding, folder).freeze
        'all'
    """
    folder = Path(path)
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    for needed in (config_path, weights_path):
        if not needed.is_file():
            raise FileNotFoundError(f"{needed} not found; was it written by save()?")
    config = json.loads(config_path.read_text())
    if config.get("format") != _FORMAT:
        raise ValueError(f"{config_path} is not a SymmetryEmbedding config.")
    if config.get("format_version", _FORMAT_VERSION) > _FORMAT_VERSION:
        raise ValueError(
            f"{config_path} has format_version {config['format_version']}; this sbi-symmetry "
            f"reads up to {_FORMAT_VERSION}: upgrade sbi-symmetry to load it."
        )
    saved_class = config["encoder_class"]
    if encoder is None:
        encoder = _rebuild_encoder(saved_class, config.get("encoder_config"))
    else:
        given = f"{type(encoder).__module__}.{type(encoder).__qualname__}"
        if given != saved_class:
            warnings.warn(
                f"Loading weights saved for {saved_class} into a {given}.",
                UserWarning,
                stacklevel=3,
            )
    embedding = cls(
        encoder,
        input_mean=torch.tensor(config["input_mean"]),
        input_std=torch.tensor(config["input_std"]),
        freeze=config["freeze"] if freeze is None else freeze,
        output_dim=config.get("output_dim"),
    )
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    try:
        embedding.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(
            f"The weights in {weights_path} do not fit the encoder ({saved_class} was "
            f"saved): {error}"
        ) from error
    embedding.history = config.get("history") or {}
    return embedding.to(map_location).eval()


def _rebuild_encoder(qualified_name: str, config: dict[str, Any] | None) -> nn.Module:
    if qualified_name not in KNOWN_ENCODERS or config is None:
        raise ValueError(
            f"Cannot rebuild a {qualified_name} from config.json alone (only "
            f"{sorted(KNOWN_ENCODERS)} with a saved config can be); build one with the same "
            "constructor arguments and pass it as `encoder=`."
        )
    module_name, class_name = KNOWN_ENCODERS[qualified_name]
    encoder_class = getattr(importlib.import_module(module_name), class_name)
    return encoder_class(**config)
