"""Reading pickled PyTorch checkpoints without letting them run code or exhaust the machine.

Official OFA ``.pt`` files pickle their training configuration: an OmegaConf ``DictConfig``
(``cfg``) or an ``argparse.Namespace`` (``args``), whose contents may also name fairseq classes
and enums. A restricted unpickler stands in inert record objects for such configuration classes
(their state is kept as plain data) and refuses every other global, so nothing from the file is
ever called except PyTorch's tensor rebuilders and a few constructors of plain values, each with
its arguments checked.

Refusing code is not enough: a few hundred bytes of pickle can also ask for gigabytes (a memo
index of 2**28, ``bytearray(2**40)``) or hours (hashing a tuple whose two items are the same
tuple, 60 levels deep). ``torch.load(weights_only=True)`` and the C unpickler are open to
those, so every pickle here goes through :class:`BoundedUnpickler`, the pure-Python unpickler
with such opcodes checked: its time and memory stay proportional to the size of its input.
:class:`BoundedConverter` then turns the loaded object graph into plain data once per object,
so shared references cost nothing and depth and size are capped.
"""

from __future__ import annotations

import builtins
import codecs
import collections
import math
import pickle
import types
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, NoReturn

import torch

from .errors import CheckpointError

__all__ = ["BoundedConverter", "BoundedUnpickler", "CheckpointUnpickler", "ConfigRecord",
           "describe_error", "load_pickled_checkpoint", "to_plain"]

# A dictionary key or set item whose hash would visit more values than this is refused:
# real keys are strings, numbers or short tuples, while a tuple holding the same tuple twice,
# n levels deep, costs 2**n to hash (the C hash holds the GIL, so nothing could interrupt it).
MAX_KEY_VALUES = 1_000

# Namespaces whose classes only carry configuration data in fairseq/OFA checkpoints.
# (Lightning checkpoints, such as taming-transformers' VQGAN last.ckpt, key their callback
# states by the callback class itself)
_CONFIG_MODULES = ("omegaconf", "argparse", "fairseq", "typing", "enum", "pathlib",
                   "models", "tasks", "criterions", "utils", "data", "pytorch_lightning",
                   "lightning")
# Distinct configuration classes a checkpoint may name (official ones name a few dozen); each
# costs a class object, far more memory than its name costs in the file.
_MAX_RECORD_CLASSES = 10_000

_TORCH_REBUILDERS = ("_rebuild_tensor_v2", "_rebuild_parameter", "_rebuild_tensor",
                     "_rebuild_parameter_with_state")
_NUMPY_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")
_BUILTINS = ("set", "frozenset", "slice", "complex", "bytearray", "object", "list", "dict",
             "tuple", "int", "float", "str", "bool", "bytes")
_SCALARS = (str, bytes, int, float, complex, bool, type(None))
_CONTAINERS = (list, tuple, dict, set, frozenset, str, bytes)
_ATOMS = frozenset({type(None), bool, int, float, str})  # exact types: immutable, cheap to hash


def _name(obj: Any) -> str:
    return getattr(obj, "__qualname__", None) or type(obj).__name__


class BoundedUnpickler(pickle._Unpickler):
    """An unpickler whose time and memory stay proportional to the bytes it reads.

    It is the pure-Python implementation (``pickle._Unpickler``, which unlike the C one can
    be checked opcode by opcode) with the costly opcodes guarded: its memo is a dict, so a
    huge memo index costs one entry, not a zero-filled array of that length; keys are hashed
    only when cheap; and every call (REDUCE, NEWOBJ, INST, OBJ), state update (BUILD) and
    item insertion goes through :meth:`check_call`, :meth:`check_build` and the allowed
    container types, which subclasses widen. As it is, only plain containers and scalars load.
    """

    error: ClassVar[type[Exception]] = CheckpointError
    mappings: ClassVar[tuple[type, ...]] = (dict,)  # what SETITEM(S) may fill
    sequences: ClassVar[tuple[type, ...]] = (list,)  # what APPEND(S) may fill
    dispatch: ClassVar[dict] = dict(pickle._Unpickler.dispatch)

    def refuse(self, reason: str) -> NoReturn:
        raise self.error(reason)

    def check_call(self, func: Any, args: tuple, kwargs: dict) -> None:
        """Refuse unless ``func(*args, **kwargs)`` is allowed and cheap; subclasses allow more."""
        self.refuse(f"refusing to call {_name(func)} while unpickling: only plain data loads")

    def check_build(self, inst: Any, state: Any) -> None:
        """Refuse unless setting ``state`` on ``inst`` (the BUILD opcode) is allowed."""
        self.refuse(f"refusing to set the state of a {type(inst).__name__} while unpickling")

    def check_key(self, key: Any) -> None:
        """Refuse a dictionary key or set item whose hash would visit too many values."""
        if type(key) in _ATOMS:
            return  # the common case, checked first: keys are mostly strings
        todo, seen = [key], 0
        while todo:
            item = todo.pop()
            seen += 1
            if isinstance(item, tuple | frozenset):
                children: Any = item
            elif isinstance(item, slice):
                children = (item.start, item.stop, item.step)
            else:
                continue  # scalars hash in time linear in their own size; objects by identity
            if seen + len(todo) + len(children) > MAX_KEY_VALUES:
                self.refuse(f"refusing a dictionary key or set item of more than "
                            f"{MAX_KEY_VALUES} nested values")
            todo.extend(children)

    def check_target(self, target: Any, allowed: tuple[type, ...], what: str) -> None:
        if not isinstance(target, allowed):
            self.refuse(f"refusing to {what} a {type(target).__name__} while unpickling")

    def _instantiate(self, klass: Any, args: list) -> None:  # the INST and OBJ opcodes
        self.check_call(klass, tuple(args), {})
        super()._instantiate(klass, args)


def _guard(opcode: bytes, check: Any) -> None:
    """Run ``check(unpickler)`` before ``opcode``'s own handler; a short stack is left for
    the handler to report as a damaged pickle."""
    original = pickle._Unpickler.dispatch[opcode[0]]

    def load(self: BoundedUnpickler) -> None:
        check(self)
        original(self)

    BoundedUnpickler.dispatch[opcode[0]] = load


def _marked(u: BoundedUnpickler) -> tuple[list, Any]:
    """The items pushed since the last MARK, and what lies under that MARK (or None)."""
    below = u.metastack[-1] if u.metastack else []
    return u.stack, (below[-1] if below else None)


def _check_setitem(u: BoundedUnpickler) -> None:
    if len(u.stack) >= 3:
        u.check_target(u.stack[-3], u.mappings, "set items of")
        u.check_key(u.stack[-2])


def _check_setitems(u: BoundedUnpickler) -> None:
    items, target = _marked(u)
    u.check_target(target, u.mappings, "set items of")
    for key in items[::2]:
        u.check_key(key)


def _check_dict(u: BoundedUnpickler) -> None:
    for key in u.stack[::2]:
        u.check_key(key)


def _check_append(u: BoundedUnpickler) -> None:
    if len(u.stack) >= 2:
        u.check_target(u.stack[-2], u.sequences, "append to")


def _check_appends(u: BoundedUnpickler) -> None:
    u.check_target(_marked(u)[1], u.sequences, "append to")


def _check_additems(u: BoundedUnpickler) -> None:
    items, target = _marked(u)
    u.check_target(target, (set,), "add items to")
    for item in items:
        u.check_key(item)


def _check_frozenset(u: BoundedUnpickler) -> None:
    for item in u.stack:
        u.check_key(item)


def _call_args(u: BoundedUnpickler, func: Any, args: Any, kwargs: Any = None) -> None:
    if not isinstance(args, tuple) or not isinstance(kwargs or {}, dict):
        u.refuse(f"refusing a call of {_name(func)} whose arguments are not a tuple")
    u.check_call(func, args, kwargs or {})


def _check_reduce(u: BoundedUnpickler) -> None:
    if len(u.stack) >= 2:
        _call_args(u, u.stack[-2], u.stack[-1])


def _check_newobj_ex(u: BoundedUnpickler) -> None:
    if len(u.stack) >= 3:
        _call_args(u, u.stack[-3], u.stack[-2], u.stack[-1])


def _check_build(u: BoundedUnpickler) -> None:
    if len(u.stack) >= 2:
        u.check_build(u.stack[-2], u.stack[-1])


def _refuse_bytearray8(u: BoundedUnpickler) -> None:
    # protocol 5's BYTEARRAY8 allocates (and zero-fills) its declared length before reading
    u.refuse("refusing a pickled bytearray (protocol 5): only plain data loads")


for _opcode, _check in ((pickle.SETITEM, _check_setitem), (pickle.SETITEMS, _check_setitems),
                        (pickle.DICT, _check_dict), (pickle.APPEND, _check_append),
                        (pickle.APPENDS, _check_appends), (pickle.ADDITEMS, _check_additems),
                        (pickle.FROZENSET, _check_frozenset), (pickle.REDUCE, _check_reduce),
                        (pickle.NEWOBJ, _check_reduce),  # cls.__new__(cls, *args): same check
                        (pickle.NEWOBJ_EX, _check_newobj_ex), (pickle.BUILD, _check_build)):
    _guard(_opcode, _check)
BoundedUnpickler.dispatch[pickle.BYTEARRAY8[0]] = _refuse_bytearray8


class BoundedConverter:
    """Turns an unpickled object graph into plain data, visiting each object once.

    Shared references map to one converted object (so a pickle of nested shared lists costs
    its size, not 2**depth); a reference cycle, nesting deeper than ``max_depth`` or more than
    ``max_values`` values in all are refused with one clear error. Subclasses say how one
    object converts (:meth:`build`, recursing through :meth:`convert`).
    """

    error: ClassVar[type[Exception]] = CheckpointError
    max_depth: ClassVar[int] = 100
    max_values: ClassVar[int] = 1_000_000

    def __init__(self, where: str) -> None:
        self.where = where
        self.values = 0  # references followed so far: the work done
        self._done: dict[int, Any] = {}  # id of a source object -> its conversion
        self._active: set[int] = set()  # ids of the objects being converted (for cycles)

    def __call__(self, obj: Any) -> Any:
        return self.convert_all((obj,), 0)[0]

    def refuse(self, reason: str) -> NoReturn:
        raise self.error(f"{self.where}: {reason}")

    def convert_all(self, items: Iterable[Any], depth: int) -> list[Any]:
        """The conversions of ``items`` (the contents of one container, at ``depth``)."""
        items = list(items)
        self.values += len(items)
        if self.values > self.max_values:
            self.refuse(f"holds more than {self.max_values:,} values")
        # atoms (strings, numbers) stand for themselves: the common case, kept inline
        return [v if type(v) in _ATOMS else self.convert(v, depth) for v in items]

    def convert(self, obj: Any, depth: int) -> Any:
        """``obj`` converted once, however often it is referenced."""
        key = id(obj)  # stable: the root keeps every source object alive meanwhile
        if key in self._done:
            return self._done[key]
        if key in self._active:
            self.refuse("holds a reference cycle")
        if depth >= self.max_depth:
            self.refuse(f"nests deeper than {self.max_depth} levels")
        self._active.add(key)
        try:
            result = self.build(obj, depth + 1)
        finally:
            self._active.discard(key)
        self._done[key] = result
        return result

    def build(self, obj: Any, depth: int) -> Any:
        raise NotImplementedError


# ---------------------------------------------------------------- checkpoints
class ConfigRecord:
    """Inert stand-in for a pickled configuration object; records what the pickle held."""

    _qualname = "?"
    # class-level defaults: the NEWOBJ opcode creates instances without calling __init__
    args: tuple | list = ()
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
        if not isinstance(self.args, list):  # a list, not a tuple: n appends cost n, not n**2
            self.args = list(self.args)
        self.args.append(value)

    def __repr__(self) -> str:
        return f"<{self._qualname} record>"


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """Safe ``copyreg._reconstructor``: only builds records, never arbitrary classes."""
    if isinstance(cls, type) and issubclass(cls, ConfigRecord):
        return cls(state) if state is not None else cls()
    raise CheckpointError(f"refusing to rebuild {cls!r} from a checkpoint")


def _refuse_call(u: BoundedUnpickler, func: Any, args: tuple, why: str) -> NoReturn:
    shown = ", ".join(type(a).__name__ for a in args)
    u.refuse(f"refusing {_name(func)}({shown}) from the checkpoint: {why}")


def _scalar_args(u: BoundedUnpickler, func: Any, args: tuple, kwargs: dict) -> None:
    # str(x) of a container is its repr, exponential in shared nesting; int and float of
    # text are bounded by Python's own digit limit
    if not all(isinstance(a, _SCALARS) for a in (*args, *kwargs.values())):
        _refuse_call(u, func, args, "it only converts plain values")


def _no_args(u: BoundedUnpickler, func: Any, args: tuple, kwargs: dict) -> None:
    if args or kwargs:
        _refuse_call(u, func, args, "it takes no arguments")


def _byte_string_args(u: BoundedUnpickler, func: Any, args: tuple, kwargs: dict) -> None:
    """bytes/bytearray from bytes, text or a list of ints, never ``bytearray(n)`` (n zeros)."""
    if kwargs or len(args) > 3 or (args and isinstance(args[0], int)):
        _refuse_call(u, func, args, "it would allocate memory the file does not hold")
    if args and not isinstance(args[0], bytes | bytearray | str | list | tuple):
        _refuse_call(u, func, args, "it only converts bytes, text or numbers")
    if not all(isinstance(a, str) for a in args[1:]):  # encoding, errors
        _refuse_call(u, func, args, "encoding and errors must be names")


def _from_container(u: BoundedUnpickler, func: Any, args: tuple, kwargs: dict) -> None:
    """list/tuple/set/dict of a container: iterating anything else (a tensor, say) could
    cost far more than the file; items that get hashed are checked like keys."""
    if len(args) > 1 or (args and not isinstance(args[0], _CONTAINERS)):
        _refuse_call(u, func, args, "it only copies a plain container")
    if args and func in (set, frozenset, dict, collections.OrderedDict):
        items = args[0]
        if isinstance(items, dict):
            return  # its keys were hashed (and checked) when it was built
        for item in items:
            u.check_key(item[0] if func in (dict, collections.OrderedDict)
                        and isinstance(item, tuple | list) and item else item)
    for key in kwargs:
        u.check_key(key)


def _defaultdict_args(u: BoundedUnpickler, func: Any, args: tuple, kwargs: dict) -> None:
    factories = (None, list, dict, set, tuple, int, float, str)
    if kwargs or not args or args[0] not in factories:
        _refuse_call(u, func, args, "its default must be an empty plain value")
    _from_container(u, dict, args[1:], {})


def _torch_size_args(u: BoundedUnpickler, func: Any, args: tuple, kwargs: dict) -> None:
    if kwargs or len(args) > 1 or (args and not isinstance(args[0], list | tuple)):
        _refuse_call(u, func, args, "a size is a tuple of integers")


def _parameter_state_args(u: BoundedUnpickler, func: Any, args: tuple, kwargs: dict) -> None:
    # its last argument is set attribute by attribute on the parameter: no dunder names
    state = args[-1] if args else None
    parts = state if isinstance(state, tuple) else (state,)
    for part in parts:
        if isinstance(part, dict) and any(not isinstance(k, str) or k.startswith("__")
                                          for k in part):
            _refuse_call(u, func, args, "parameter attributes must be plain names")


def _any_args(u: BoundedUnpickler, func: Any, args: tuple, kwargs: dict) -> None:
    """Tensor rebuilders: their storages come from the file, and torch checks the views
    (tensors larger than their storage are refused after loading, see ofa.checkpoints)."""


def _numpy_calls() -> dict[Any, Any]:
    """numpy's pickling of scalars, dtypes and arrays, restricted to what it writes."""
    import numpy as np

    def dtype_args(u: BoundedUnpickler, func: Any, args: tuple, kwargs: dict) -> None:
        # numpy writes dtype("f8", False, True); a short type code bounds the item size
        if kwargs or not args or not isinstance(args[0], str) or len(args[0]) > 8:
            _refuse_call(u, func, args, "only simple numpy type codes load")

    def scalar_args(u: BoundedUnpickler, func: Any, args: tuple, kwargs: dict) -> None:
        if (kwargs or len(args) != 2 or not isinstance(args[0], np.dtype)
                or args[0].hasobject or not isinstance(args[1], bytes)):
            _refuse_call(u, func, args, "only numeric numpy scalars load")

    def reconstruct_args(u: BoundedUnpickler, func: Any, args: tuple, kwargs: dict) -> None:
        # numpy writes _reconstruct(ndarray, (0,), b"b") and sets shape and data by BUILD
        if kwargs or len(args) != 3 or args[0] is not np.ndarray or args[1] != (0,):
            _refuse_call(u, func, args, "not how numpy pickles an array")

    calls: dict[Any, Any] = {np.dtype: dtype_args}
    for module in _NUMPY_MODULES:
        try:
            mod = __import__(module, fromlist=["scalar"])
        except ImportError:
            continue
        calls[mod.scalar] = scalar_args
        calls[mod._reconstruct] = reconstruct_args
    return calls


def _check_numpy_state(u: BoundedUnpickler, inst: Any, state: Any) -> bool:
    """Whether ``state`` is a plain numpy dtype or array state (refusing a bad array one)."""
    import numpy as np

    if isinstance(inst, np.dtype):
        # (version, byte order, subarray, names, fields, ...): no subarrays, no records
        return isinstance(state, tuple) and len(state) >= 5 and state[2:5] == (None,) * 3
    if not isinstance(inst, np.ndarray):
        return False
    # (version, shape, dtype, fortran, data): numpy trusts the shape, and for object arrays
    # (not data: refused) even crashes on a short list; the bytes must hold exactly the shape
    if not (isinstance(state, tuple) and len(state) == 5 and isinstance(state[1], tuple)
            and all(isinstance(n, int) and n >= 0 for n in state[1])
            and isinstance(state[2], np.dtype) and not state[2].hasobject
            and isinstance(state[4], bytes)):
        u.refuse("refusing a numpy array state that is not numbers of its declared shape")
    if math.prod(state[1]) * state[2].itemsize != len(state[4]):
        u.refuse(f"refusing a numpy array of shape {state[1]}: the file holds "
                 f"{len(state[4])} bytes for it")
    return True


def _call_checks() -> dict[Any, Any]:
    calls: dict[Any, Any] = {getattr(torch._utils, n): _any_args for n in _TORCH_REBUILDERS}
    calls[torch._utils._rebuild_parameter_with_state] = _parameter_state_args
    calls.update({torch.Size: _torch_size_args, torch.device: _scalar_args,
                  collections.OrderedDict: _from_container,
                  collections.defaultdict: _defaultdict_args,
                  _reconstructor: _any_args,  # it builds records only
                  codecs.encode: _scalar_args})  # protocol 2's bytes: encode(text, "latin1")
    calls.update({set: _from_container, frozenset: _from_container, list: _from_container,
                  tuple: _from_container, dict: _from_container, bytes: _byte_string_args,
                  bytearray: _byte_string_args, str: _scalar_args, int: _scalar_args,
                  float: _scalar_args, complex: _scalar_args, bool: _scalar_args,
                  slice: _scalar_args, object: _no_args})
    return calls


class CheckpointUnpickler(BoundedUnpickler):
    """What a model checkpoint may hold: tensors, containers, scalars and inert records of
    other classes; no code runs. Readers of other pickle-based formats (TorchScript
    archives) subclass it and widen ``find_class`` / ``persistent_load`` for their own
    names only."""

    mappings = (dict, ConfigRecord)
    sequences = (list, ConfigRecord)
    _calls: ClassVar[dict[Any, Any] | None] = None  # built on first use (numpy is imported)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._records: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name in _TORCH_REBUILDERS:
            return getattr(torch._utils, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype | torch.Size):
            return getattr(torch, name)
        if (module, name) in {("torch", "Size"), ("torch", "device")}:
            return getattr(torch, name)
        if module == "collections" and name in ("OrderedDict", "defaultdict"):
            return getattr(collections, name)
        if module in ("builtins", "__builtin__") and name in _BUILTINS:
            return getattr(builtins, name)
        if (module, name) == ("_codecs", "encode"):
            return codecs.encode
        if module in _NUMPY_MODULES and name in ("scalar", "_reconstruct") or (
                module == "numpy" and name in ("dtype", "ndarray")):
            import numpy  # noqa: F401  (numpy constructors build plain data)

            return getattr(__import__(module, fromlist=[name]), name)
        if module == "copyreg" and name == "_reconstructor":
            return _reconstructor
        if module.split(".")[0] in _CONFIG_MODULES:
            return self._record_class(module, name)
        raise CheckpointError(
            f"refusing to load {module}.{name} from the checkpoint: it is neither a tensor nor "
            "configuration data, and unpickling it could run code")

    def _record_class(self, module: str, name: str) -> type:
        cls = self._records.get((module, name))
        if cls is None:
            if len(self._records) >= _MAX_RECORD_CLASSES:
                self.refuse(f"refusing a checkpoint that names more than "
                            f"{_MAX_RECORD_CLASSES:,} configuration classes")
            cls = types.new_class(name, (ConfigRecord,), {}, lambda ns: ns.update(
                _qualname=f"{module}.{name}", __module__=module))
            self._records[(module, name)] = cls
        return cls

    def check_call(self, func: Any, args: tuple, kwargs: dict) -> None:
        if isinstance(func, type) and issubclass(func, ConfigRecord):
            return  # records keep their arguments, nothing more
        calls = type(self)._calls
        if calls is None:
            calls = type(self)._calls = {**_call_checks(), **_numpy_calls()}
        try:
            check = calls.get(func)
        except TypeError:  # an unhashable object is no allowed callable either
            check = None
        if check is None:
            self.refuse(f"refusing to call {_name(func)} from the checkpoint: only tensors "
                        "and configuration data load")
        check(self, func, args, kwargs)

    def check_build(self, inst: Any, state: Any) -> None:
        if isinstance(inst, ConfigRecord):
            return  # its __setstate__ stores the state
        if isinstance(inst, dict) and (state is None or isinstance(state, dict) and all(
                isinstance(k, str) and not k.startswith("__") for k in state)):
            return  # an OrderedDict's attributes, such as a state dict's _metadata
        if not _check_numpy_state(self, inst, state):
            super().check_build(inst, state)


class _RestrictedPickleModule:
    """Passed as ``torch.load(pickle_module=...)``: torch adds its storage handling on top."""

    Unpickler = CheckpointUnpickler
    load = staticmethod(lambda f, **kw: CheckpointUnpickler(f, **kw).load())
    __name__ = "ofa_restricted_pickle"


def describe_error(e: BaseException) -> str:
    """``Type: first line of the message`` (just the type when there is no message)."""
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:200]}" if text else type(e).__name__


def _check_zip_entries(path: str | Path) -> None:
    """torch.save stores zip entries uncompressed; a compressed one could inflate a few
    megabytes into many gigabytes when torch reads it, so it is refused unread. A TorchScript
    archive (a ``constants.pkl`` entry) is refused too: ``torch.load`` hands those to
    ``torch.jit.load``, which compiles and runs the archive's code, whatever unpickler it is
    given."""
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: damaged zip archive ({describe_error(e)})"
                              ) from None
    if any(i.filename.rsplit("/", 1)[-1] == "constants.pkl" for i in infos):
        raise CheckpointError(f"cannot read {path}: it is a TorchScript archive, whose code "
                              "this loader never runs; give the plain weights instead")
    packed = [i.filename for i in infos if i.compress_type != zipfile.ZIP_STORED]
    if packed:
        raise CheckpointError(f"cannot read {path}: it holds compressed entries ({packed[0]}), "
                              "which torch.save never writes")


def load_pickled_checkpoint(path: str | Path) -> Any:
    """``torch.load`` a checkpoint to CPU without executing code from it.

    Zip-format files (what torch >= 1.6 writes) are memory-mapped, copy-on-write: only the
    tensors that are used are ever read (not an optimizer state, nor the unused one of the
    model and EMA weights), and the pages are released with the tensors. Models copy the
    weights they load, so they never depend on the file afterwards.
    """
    try:
        mmap = zipfile.is_zipfile(path)  # the legacy format cannot be mapped
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror or e}") from None
    if mmap:
        _check_zip_entries(path)
    try:
        # never weights_only=True: torch's own restricted unpickler allows bytearray(n) and
        # hashes any key, so a tiny file could still take all memory or hang
        return torch.load(path, map_location="cpu", weights_only=False, mmap=mmap,
                          pickle_module=_RestrictedPickleModule)
    except CheckpointError as e:  # a refusal: say which file
        raise CheckpointError(f"{path}: {e}") from None
    except Exception as e:  # noqa: BLE001  any other failure here means a damaged file
        raise CheckpointError(f"cannot read {path}: damaged or not a PyTorch checkpoint "
                              f"({describe_error(e)})") from None


class _ConfigConverter(BoundedConverter):
    """Records of OmegaConf/argparse objects -> dicts and values (other objects kept)."""

    def build(self, obj: Any, depth: int) -> Any:
        if isinstance(obj, ConfigRecord):
            state = obj.state
            if isinstance(state, dict):
                if "_content" in state:  # OmegaConf container or value node
                    return self.convert_all((state["_content"],), depth)[0]
                if "_val" in state:
                    return self.convert_all((state["_val"],), depth)[0]
                public = {k: v for k, v in state.items() if not str(k).startswith("_")}
                return dict(zip(public, self.convert_all(public.values(), depth), strict=True))
            if obj.args:
                values = self.convert_all(obj.args, depth)
                return values[0] if len(values) == 1 else values
            return None
        if isinstance(obj, dict):
            return dict(zip(obj, self.convert_all(obj.values(), depth), strict=True))
        if isinstance(obj, list | tuple):
            return self.convert_all(obj, depth)
        return obj


def to_plain(obj: Any, where: str = "checkpoint configuration") -> Any:
    """Turn records of OmegaConf/argparse objects into dicts and values, recursively.

    Each object is converted once (shared references share the result); a cycle, nesting
    deeper than 100 levels or more than a million values is a CheckpointError naming ``where``.
    """
    return _ConfigConverter(where)(obj)
