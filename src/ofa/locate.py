"""From the name a user gives (``ofa.load(NAME)``, ``--model NAME``) to the checkpoint path that
:func:`ofa.checkpoints.read_checkpoint` reads.

Resolution order (the first that applies wins):

1. **A local path** that exists (``~`` expanded): a checkpoint file (fairseq ``.pt``,
   mmpretrain ``.pth``, HF ``.safetensors``) or folder (native, HF port), used as it is.
2. **A registry name or alias** (:mod:`ofa.pretrained`; ``ofa models`` lists them): a bundled
   entry (``shapes-demo``) is its folder inside the package; any other entry is downloaded once
   and converted once to ``$OFA_HOME/models/<name>`` (:func:`ofa.download.fetch_pretrained`;
   later calls make no network request); text-to-image entries get their ``vqgan/`` and
   ``clip/`` folders there too. Published names this package cannot read (Chinese
   checkpoints, ...) stop here with the reason.
3. **A HuggingFace hub id** ``owner/name`` that is not in the registry (your own fine-tune in
   the HF-transformers layout): downloaded through ``huggingface_hub`` (its cache,
   ``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, ``HF_TOKEN``) and converted once to
   ``$OFA_HOME/models/hf--<owner>--<name>`` (:func:`ofa.download.fetch_hub_model`).
4. Otherwise an :class:`~ofa.errors.InputError`: "no such checkpoint file or folder" for what
   looks like a path (a path separator, or a checkpoint file extension), else the registry's
   unknown-name error with the closest names.

A path wins over a name: a folder ``./ofa-base`` is read, not the registry's ``ofa-base``.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import InputError

__all__ = ["locate_model"]


def _looks_like_path(name: str) -> bool:
    from .hub import CHECKPOINT_SUFFIXES

    seps = {os.sep, "/"} | ({os.altsep} if os.altsep else set())
    return any(sep in name for sep in seps) or name.lower().endswith(CHECKPOINT_SUFFIXES)


def _existing(raw: str) -> Path | None:
    """``raw`` as an existing path (``~`` expanded), else None; a string no file system takes
    (too long, a NUL byte, an unknown ``~user``) is no path either."""
    try:
        path = Path(raw).expanduser()
        return path if path.exists() else None
    except (OSError, ValueError, RuntimeError):
        return None


def locate_model(name_or_path: str | os.PathLike[str], *, progress: bool = True) -> Path:
    """The checkpoint file or folder ``name_or_path`` stands for (module doc: the order),
    downloading and converting it first when it is a remote model seen for the first time."""
    from .download import bundled_path, fetch_hub_model, fetch_pretrained
    from .hub import RepoNotFoundError, is_repo_id
    from .pretrained import lookup, resolve

    raw = os.fspath(name_or_path) if isinstance(name_or_path, str | os.PathLike) else None
    if not isinstance(raw, str) or not raw.strip():
        raise InputError(f"model name or path must be a non-empty string, got {name_or_path!r}")
    path = _existing(raw)
    if path is not None:
        return path
    name = raw.strip()
    entry = lookup(name)  # raises for published checkpoints this package cannot read
    if entry is not None:
        if entry.bundled is not None:
            return bundled_path(entry)
        return fetch_pretrained(entry.name, progress=progress)
    if is_repo_id(name):
        try:
            return fetch_hub_model(name, progress=progress)
        except RepoNotFoundError as e:  # maybe a mistyped relative path: say all three
            raise InputError(f"no such checkpoint file or folder: {raw}; nor is it a registry "
                             f"name (`ofa models` lists them) or a model on the HF hub "
                             f"({e.endpoint}; a private repo needs HF_TOKEN)") from None
    if _looks_like_path(name):
        raise InputError(f"no such checkpoint file or folder: {raw}")
    resolve(name)  # raises the unknown-name error, with the closest registry names
    raise AssertionError("unreachable: lookup found no entry")
