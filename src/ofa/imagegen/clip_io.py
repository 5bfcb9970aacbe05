"""Reading CLIP weights without running anything from the file.

Two kinds of file hold OpenAI CLIP weights:

* OpenAI's release, e.g. ``ViT-B-16.pt`` (the ``clip/ViT-B-16.pt`` inside OFA's
  ``image_gen_large_best.zip``): a **TorchScript archive**. It is a zip whose ``<name>/data.pkl``
  pickles the traced module tree (classes named ``__torch__.…``, each holding its parameters
  and buffers as attributes), whose ``<name>/data/<key>`` entries hold the raw storages, and
  whose ``<name>/code/`` holds the TorchScript source of every method. ``torch.load`` hands
  such a file to ``torch.jit.load``, which compiles that code, and refuses it with
  ``weights_only=True``; so it is read here directly: ``data.pkl`` goes through the project's
  restricted unpickler (:mod:`ofa.safe_unpickle`), widened only to take ``__torch__.*`` classes
  as inert records and ``torch.<Type>Storage`` names as storage dtypes, and ``code/`` is never
  opened. 195 of its tensors are float16 (``clip.model.convert_weights``); all come back as
  float32. The int64 buffers ``input_resolution``, ``context_length`` and ``vocab_size`` are
  dropped, as ``clip.model.build_model`` does.
* A plain state dict with OpenAI's key names (``torch.save(model.state_dict())``, open_clip's
  ``ViT-B-16-quickgelu`` checkpoints, ``{"state_dict": ...}`` wrappers, ``module.`` prefixes, or a
  ``.safetensors`` file), read with :func:`ofa.safe_unpickle.load_pickled_checkpoint`.

The BPE vocabulary (``bpe_simple_vocab_16e6.txt.gz``) is not in either file; see
:func:`find_vocab`.
"""

from __future__ import annotations

import importlib.util
import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..checkpoints import read_weights_file
from ..errors import CheckpointError
from ..safe_unpickle import (
    BoundedConverter,
    CheckpointUnpickler,
    ConfigRecord,
    describe_error,
)

__all__ = ["VOCAB_ENV", "VOCAB_NAME", "VOCAB_SHA256", "find_vocab", "is_torchscript_archive",
           "read_clip_state_dict"]

VOCAB_NAME = "bpe_simple_vocab_16e6.txt.gz"
# github.com/openai/CLIP clip/bpe_simple_vocab_16e6.txt.gz, byte-identical to the copy in the
# open_clip_torch wheel (open_clip/bpe_simple_vocab_16e6.txt.gz): 1,356,917 bytes
VOCAB_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
VOCAB_ENV = "OFA_CLIP_VOCAB"

# int64 scalars OpenAI's archives carry beside the weights (clip.model.build_model drops them)
_ARCHIVE_SCALARS = ("input_resolution", "context_length", "vocab_size")
_MAX_DATA_PKL = 64 << 20  # the real one is ~40 KB: module names, attribute names, tensor headers

# the storage classes torch's C++ pickler names (``torch.<ScalarType>Storage``)
_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


@dataclass(frozen=True)
class _StorageType:
    """What ``torch.HalfStorage`` & co. unpickle to: a dtype, never anything callable."""

    dtype: torch.dtype


class _ArchiveUnpickler(CheckpointUnpickler):
    """The checkpoint unpickler plus what a TorchScript ``data.pkl`` names: ``__torch__.*``
    module classes (inert records: their attributes are kept as data, their code never loads)
    and storages in the archive's ``data/`` folder."""

    def __init__(self, file: Any, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(file)
        self._archive, self._prefix = archive, prefix
        self._storages: dict[str, torch.storage.TypedStorage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "__torch__" or module.startswith("__torch__."):
            return self._record_class(module, name)
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> torch.storage.TypedStorage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str)
                and pid[2].isdigit() and type(pid[4]) is int and pid[4] >= 0):
            self.refuse(f"refusing persistent id {str(pid)[:80]}: not a tensor storage")
        _, kind, key, _location, numel = pid
        if key in self._storages:
            return self._storages[key]
        entry = f"{self._prefix}data/{key}"
        try:
            info = self._archive.getinfo(entry)
        except KeyError:
            self.refuse(f"tensor data {entry} is missing")
        nbytes = numel * kind.dtype.itemsize
        if info.compress_type != zipfile.ZIP_STORED or info.file_size != nbytes:
            self.refuse(f"tensor data {entry} is not {nbytes:,} stored bytes")
        raw = self._archive.read(entry)
        untyped = (torch.UntypedStorage.from_buffer(raw, dtype=torch.uint8) if raw
                   else torch.UntypedStorage(0))
        storage = torch.storage.TypedStorage(wrap_storage=untyped, dtype=kind.dtype,
                                             _internal=True)
        self._storages[key] = storage
        return storage


class _ModuleTree(BoundedConverter):
    """A module record -> ``{attribute: tensor | subtree}`` (flags and other values dropped)."""

    def build(self, obj: Any, depth: int) -> Any:
        if isinstance(obj, torch.Tensor):
            return obj
        if not isinstance(obj, ConfigRecord) or not isinstance(obj.state, dict):
            return None
        kept = {k: v for k, v in obj.state.items()
                if isinstance(k, str) and isinstance(v, torch.Tensor | ConfigRecord)}
        return dict(zip(kept, self.convert_all(kept.values(), depth), strict=True))


def _flatten(tree: dict, prefix: str, out: dict[str, torch.Tensor], seen: set[int]) -> None:
    for name, value in tree.items():
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value
        elif isinstance(value, dict):
            if id(value) in seen:  # a module tree is a tree: never expand a shared node twice
                raise CheckpointError(f"module {prefix}{name} appears twice in the archive")
            seen.add(id(value))
            _flatten(value, f"{prefix}{name}.", out, seen)


def _archive_prefix(path: Path) -> str | None:
    """``name/`` when ``path`` is a TorchScript archive (it has ``name/constants.pkl``, the
    test ``torch.load`` uses, and ``name/data.pkl``), else None."""
    try:
        if not zipfile.is_zipfile(path):
            return None
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
    except (OSError, zipfile.BadZipFile, ValueError):
        return None
    for name in names:
        head, _, tail = name.partition("/")
        if tail == "constants.pkl" and f"{head}/data.pkl" in names:
            return head + "/"
    return None


def is_torchscript_archive(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a TorchScript archive (like OpenAI's released CLIP ``.pt`` files)."""
    return _archive_prefix(Path(path)) is not None


def _read_archive(path: Path, prefix: str) -> dict[str, torch.Tensor]:
    try:
        with zipfile.ZipFile(path) as z:
            info = z.getinfo(prefix + "data.pkl")
            if info.compress_type != zipfile.ZIP_STORED or info.file_size > _MAX_DATA_PKL:
                raise CheckpointError(f"{path}: {info.filename} is compressed or larger than "
                                      f"{_MAX_DATA_PKL >> 20} MiB, unlike any TorchScript archive")
            root = _ArchiveUnpickler(io.BytesIO(z.read(info)), z, prefix).load()
    except CheckpointError as e:
        message = str(e)
        raise CheckpointError(message if message.startswith(str(path)) else f"{path}: {message}"
                              ) from None
    except Exception as e:  # noqa: BLE001  anything else: a damaged file
        raise CheckpointError(f"cannot read {path}: damaged TorchScript archive "
                              f"({describe_error(e)})") from None
    if not isinstance(root, ConfigRecord):
        raise CheckpointError(f"{path}: the archive's data.pkl holds a {type(root).__name__}, "
                              "not a module")
    state: dict[str, torch.Tensor] = {}
    _flatten(_ModuleTree(f"{path}: module tree")(root), "", state, set())
    return state


def _check_backed(where: str, name: str, t: torch.Tensor) -> None:
    """A pickle can rebuild a view (stride 0) that shows a tiny storage as billions of values."""
    if t.layout != torch.strided:
        raise CheckpointError(f"{where}: tensor {name} is not a dense tensor ({t.layout})")
    if t.numel() and t.numel() * t.element_size() > t.untyped_storage().nbytes():
        raise CheckpointError(f"{where}: tensor {name} of shape {tuple(t.shape)} has more "
                              "elements than its data holds: the file is damaged")


def read_clip_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """OpenAI-named CLIP weights from ``path``, as float32 tensors on the CPU.

    ``path`` is OpenAI's TorchScript release (``ViT-B-16.pt``), a pickled state dict (also
    ``{"state_dict": ...}`` and ``module.``-prefixed keys) or a ``.safetensors`` file. Nothing in
    the file is executed; anything but tensors and plain data is refused with a CheckpointError.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"CLIP weights not found: {p}")
    prefix = _archive_prefix(p)
    if prefix is not None:
        obj: Any = _read_archive(p, prefix)
    else:
        obj = read_weights_file(p)
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{p}: expected a CLIP state dict, found "
                              f"{'an empty dict' if obj == {} else type(obj).__name__}")
    if all(isinstance(k, str) and k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}  # saved from DataParallel
    state = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{p}: entry {str(key)[:80]!r} is a {type(value).__name__}, "
                                  "not a tensor: not a CLIP state dict")
        if key in _ARCHIVE_SCALARS:
            continue
        _check_backed(str(p), key, value)
        if not value.is_floating_point():
            raise CheckpointError(f"{p}: {key} holds {value.dtype} values; CLIP weights are "
                                  "floating point")
        state[key] = value.detach().to(torch.float32)
    return state


def find_vocab(weights: str | os.PathLike[str] | None = None) -> Path | None:
    """Where CLIP's BPE vocabulary is: ``$OFA_CLIP_VOCAB``, else ``bpe_simple_vocab_16e6.txt.gz``
    next to ``weights``, else the copy inside an installed ``open_clip`` (open_clip_torch) or
    OpenAI ``clip`` package (found without importing them). None when none exists."""
    candidates = []
    if os.environ.get(VOCAB_ENV):
        candidates.append(Path(os.environ[VOCAB_ENV]))
    if weights is not None:
        candidates.append(Path(weights).parent / VOCAB_NAME)
    for package in ("open_clip", "clip"):
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        for folder in (spec.submodule_search_locations or []) if spec else []:
            candidates.append(Path(folder) / VOCAB_NAME)
    return next((c for c in candidates if c.is_file()), None)
