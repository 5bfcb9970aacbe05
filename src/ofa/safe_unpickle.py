"""Reading pickled PyTorch checkpoints without letting them run code.

Plain ``torch.load(..., weights_only=True)`` is tried first. Official OFA ``.pt`` files fail it
only because they pickle their training configuration: an OmegaConf ``DictConfig`` (``cfg``) or
an ``argparse.Namespace`` (``args``), whose contents may also name fairseq classes and enums.
For those files a restricted unpickler stands in inert record objects for such configuration
classes (their state is kept as plain data) and refuses every other global, so nothing from
the file is ever called except PyTorch's own tensor rebuilders.
"""

from __future__ import annotations

import builtins
import collections
import pickle
import types
import zipfile
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError

# Namespaces whose classes only carry configuration data in fairseq/OFA checkpoints.
_CONFIG_MODULES = ("omegaconf", "argparse", "fairseq", "typing", "enum", "pathlib",
                   "models", "tasks", "criterions", "utils", "data")

_TORCH_REBUILDERS = {"_rebuild_tensor_v2", "_rebuild_parameter", "_rebuild_tensor",
                     "_rebuild_parameter_with_state"}
_NUMPY_DATA = {(m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray")
               for n in ("scalar", "_reconstruct")} | {("numpy", "dtype"), ("numpy", "ndarray")}
_BUILTINS = {"set", "frozenset", "slice", "complex", "bytearray", "object", "list", "dict",
             "tuple", "int", "float", "str", "bool", "bytes"}


class ConfigRecord:
    """Inert stand-in for a pickled configuration object; records what the pickle held."""

    _qualname = "?"
    # class-level defaults: the NEWOBJ opcode creates instances without calling __init__
    args: tuple = ()
    state: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.state = args, kwargs or None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:  # dict-like pickles (SETITEMS)
        if not isinstance(self.state, dict):
            self.state = {}
        self.state[key] = value

    def append(self, value: Any) -> None:  # list-like pickles (APPENDS)
        self.args = (*self.args, value)

    def __repr__(self) -> str:
        return f"<{self._qualname} record>"


def _record_class(module: str, name: str) -> type:
    return types.new_class(name, (ConfigRecord,), {},
                           lambda ns: ns.update(_qualname=f"{module}.{name}", __module__=module))


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """Safe ``copyreg._reconstructor``: only builds records, never arbitrary classes."""
    if isinstance(cls, type) and issubclass(cls, ConfigRecord):
        return cls(state) if state is not None else cls()
    raise CheckpointError(f"refusing to rebuild {cls!r} from a checkpoint")


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name in _TORCH_REBUILDERS:
            return getattr(torch._utils, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype | torch.Size):
            return getattr(torch, name)
        if (module, name) in {("torch", "Size"), ("torch", "device")}:
            return getattr(torch, name)
        if module == "collections" and name in ("OrderedDict", "defaultdict"):
            return getattr(collections, name)
        if module == "builtins" and name in _BUILTINS:
            return getattr(builtins, name)
        if (module, name) in _NUMPY_DATA:
            import numpy  # noqa: F401  (numpy constructors build plain data)

            mod = __import__(module, fromlist=[name])
            return getattr(mod, name)
        if module == "copyreg" and name == "_reconstructor":
            return _reconstructor
        if module.split(".")[0] in _CONFIG_MODULES:
            return _record_class(module, name)
        raise CheckpointError(
            f"refusing to load {module}.{name} from the checkpoint: it is neither a tensor nor "
            "configuration data, and unpickling it could run code")


class _RestrictedPickleModule:
    """Passed as ``torch.load(pickle_module=...)``: torch adds its storage handling on top."""

    Unpickler = _RestrictedUnpickler
    load = staticmethod(lambda f, **kw: _RestrictedUnpickler(f, **kw).load())
    __name__ = "ofa_restricted_pickle"


def load_pickled_checkpoint(path: str | Path) -> Any:
    """``torch.load`` a checkpoint to CPU without executing code from it.

    Zip-format files (what torch >= 1.6 writes) are memory-mapped, copy-on-write: only the
    tensors that are used are ever read (not an optimizer state, nor the unused one of the
    model and EMA weights), and the pages are released with the tensors. Models copy the
    weights they load, so they never depend on the file afterwards.
    """
    mmap = zipfile.is_zipfile(path)  # the legacy format cannot be mapped
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError:
        pass  # pickled config objects: use the restricted unpickler below
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: damaged or not a PyTorch checkpoint "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False, mmap=mmap,
                          pickle_module=_RestrictedPickleModule)
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001  any failure here means a damaged file
        raise CheckpointError(f"cannot read {path}: damaged checkpoint "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None


def to_plain(obj: Any, _depth: int = 0) -> Any:
    """Turn records of OmegaConf/argparse objects into dicts and values, recursively."""
    if _depth > 50:
        return None
    if isinstance(obj, ConfigRecord):
        state = obj.state
        if isinstance(state, dict):
            if "_content" in state:  # OmegaConf container or value node
                return to_plain(state["_content"], _depth + 1)
            if "_val" in state:
                return to_plain(state["_val"], _depth + 1)
            return {k: to_plain(v, _depth + 1) for k, v in state.items()
                    if not str(k).startswith("_")}
        if obj.args:
            return to_plain(obj.args[0], _depth + 1) if len(obj.args) == 1 else [
                to_plain(a, _depth + 1) for a in obj.args]
        return None
    if isinstance(obj, dict):
        return {k: to_plain(v, _depth + 1) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_plain(v, _depth + 1) for v in obj]
    return obj
