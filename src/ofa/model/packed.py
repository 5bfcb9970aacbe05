"""Linear layers with oneDNN-packed weights for CPU inference.

A decoding step multiplies a few rows (the beams) by every decoder weight and by the output
table, so it is bound by how fast the weights stream from memory. PyTorch's default CPU path
for ``F.linear`` (MKL's GEMM on the plain [out, in] weight) reads them at about a third of the
machine's read bandwidth for 5 rows; the same product on a weight reordered once into oneDNN's
blocked layout (``torch.ops.mkldnn._reorder_linear_weight`` + ``_linear_pointwise``: what
``torch.compile`` freezing uses for CPU linears) reads them two to three times faster, and is
faster for the encoder's long inputs too (``benchmarks/roofline.py``, BENCHMARKS.md).

The packed copy is made on first use and kept beside the float weight (which the state dict,
training and the ONNX export keep using), and remade whenever the weight changes (another
tensor, an in-place update, its ``.data`` swapped by ``module.to``), so a model trained after
a no-grad pass never multiplies by a stale copy. It is used only on the CPU, in fp32 or bf16
(bf16 only where oneDNN packs it: not on AVX2-only CPUs), outside autograd, and costs the
memory of one more copy of the weights it packs.
``packed_weights(False)`` (a context manager) or the environment variable
``OFA_PACKED_WEIGHTS=0`` turns it off, and the oneDNN fp32 attention with it
(:func:`onednn_products`); FLOP counting turns it off, since torch's FLOP counter does not
see the oneDNN op.

Every use checks that the packed copy still matches its weight, which costs about 9 us a
product inside a decoding step (the weights streaming through the caches evict what the check
reads). Inside :func:`steady_weights` (generation: the same weights at every step) a derived
value is checked once and then reused unchecked until the block ends.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import threading
import weakref
from collections.abc import Callable, Iterator

import torch
from torch import nn

__all__ = ["TransientCache", "derived", "eager_inference", "joined_linear", "joined_weights",
           "linear", "onednn_products", "packed_weights", "packing_available", "packs",
           "same_tensors", "steady_weights", "table_linear", "tensor_key"]

_ENABLED = os.environ.get("OFA_PACKED_WEIGHTS", "1") != "0"
# on the module that owns the weight: {name: (refs, keys, value, steady epoch checked in)}
_CACHE_ATTR = "_ofa_packed"
_EPOCHS = itertools.count(1)
# per thread (a server may generate in one thread while another changes weights): the
# current steady_weights block's epoch, None outside one
_steady = threading.local()


def packing_available() -> bool:
    """Whether this PyTorch build has the oneDNN CPU linear kernels."""
    return (torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
            and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


_AVAILABLE = packing_available()
_PLAIN_WEIGHTS = (torch.Tensor, nn.Parameter)


@contextlib.contextmanager
def packed_weights(enabled: bool) -> Iterator[None]:
    """Use packed weights (True) or PyTorch's plain ``F.linear`` (False) inside the block."""
    global _ENABLED
    before, _ENABLED = _ENABLED, enabled
    try:
        yield
    finally:
        _ENABLED = before


@contextlib.contextmanager
def steady_weights() -> Iterator[None]:
    """Promise that no weight changes inside the block (a ``generate`` call): values derived
    from weights (:func:`derived`) are checked against them once in the block, then reused
    without the check. Each name a module keeps must stand for the same tensors throughout
    the block, as it does for weights."""
    before = getattr(_steady, "epoch", None)
    _steady.epoch = next(_EPOCHS)
    try:
        yield
    finally:
        _steady.epoch = before


def eager_inference(*tensors: torch.Tensor) -> bool:
    """True outside autograd, tracing and compilation, on plain tensors: where a forward may
    take paths a graph or a backward pass could not (tracing by torch.export, ONNX or
    torch.compile sees fake or functional tensor subclasses)."""
    return (not torch.is_grad_enabled() and not torch.jit.is_tracing()
            and not torch.compiler.is_compiling()
            and all(type(t) is torch.Tensor for t in tensors))


@functools.cache
def packs(dtype: torch.dtype) -> bool:
    """Whether oneDNN packs ``dtype`` weights here: bf16 needs AVX512-BW/VL/DQ or
    AVX-NE-CONVERT (held back by ``ONEDNN_MAX_CPU_ISA`` too), else the reorder raises."""
    if not _AVAILABLE:
        return False
    try:
        torch.ops.mkldnn._reorder_linear_weight(torch.zeros(16, 16, dtype=dtype), None)
    except RuntimeError:
        return False
    return True


def onednn_products(dtype: torch.dtype) -> bool:
    """Whether inference may take oneDNN's linear kernel for ``dtype`` products here (packed
    weights, and the fp32 attention products of ``ofa.model.attention``): on, and packable."""
    return _ENABLED and packs(dtype)


def _usable(x: torch.Tensor, weight: torch.Tensor) -> bool:
    # a plain weight or parameter (``weight.data`` would make a new tensor at every call)
    return (_ENABLED and _AVAILABLE and type(weight) in _PLAIN_WEIGHTS and eager_inference(x)
            and x.is_cpu and x.dtype == weight.dtype
            and x.dtype in (torch.float32, torch.bfloat16)
            and weight.layout == torch.strided and x.dim() >= 2 and packs(x.dtype))


class TransientCache(dict):
    """Values derived from a module's weights (packed copies, position biases), kept in its
    ``__dict__``; never copied or pickled with the module (a deep copy or a pickled model
    derives them again on first use)."""

    def __deepcopy__(self, memo: dict) -> TransientCache:
        return TransientCache()

    def __reduce__(self) -> tuple:
        return TransientCache, ()


def tensor_key(t: torch.Tensor) -> tuple:
    """What changes when a tensor's values may have: its version (in-place updates; tensors
    made under inference_mode keep none), storage and dtype (``module.to(dtype)`` swaps a
    parameter's ``.data``: same object and version) and shape."""
    return (-1 if t.is_inference() else t._version, t.data_ptr(), t.dtype, tuple(t.shape))


def same_tensors(refs: tuple, keys: tuple, tensors: list[torch.Tensor]) -> bool:
    """Whether ``tensors`` are the very tensors of ``refs`` (weak references), unchanged since
    ``keys`` (:func:`tensor_key`) were taken: not merely others at the same addresses."""
    # a plain loop: this runs for every product of every decoding step, where generator
    # expressions cost about as much as the check itself
    if len(refs) != len(tensors):
        return False
    for ref, key, t in zip(refs, keys, tensors, strict=True):
        if ref() is not t or key != tensor_key(t):
            return False
    return True


def derived(owner: nn.Module, name: str, tensors: list[torch.Tensor],
            make: Callable[[], object]) -> object:
    """What ``make()`` derives from ``tensors`` (a packed copy, a folded weight, tables
    joined), kept on ``owner`` under ``name`` and made again unless it was made from these
    very tensors at their current versions."""
    cache = owner.__dict__.setdefault(_CACHE_ATTR, TransientCache())
    hit = cache.get(name)
    epoch = getattr(_steady, "epoch", None)
    if hit is not None and epoch is not None and hit[3] == epoch:
        return hit[2]  # checked already in this steady_weights block
    if hit is None or not same_tensors(hit[0], hit[1], tensors):
        hit = (tuple(weakref.ref(t) for t in tensors), tuple(tensor_key(t) for t in tensors),
               make(), epoch)
    else:
        hit = (*hit[:3], epoch)
    cache[name] = hit
    return hit[2]


def _packed(owner: nn.Module, name: str, weight: torch.Tensor) -> torch.Tensor:
    """The packed copy of ``weight``."""
    return derived(owner, name, [weight],
                   lambda: torch.ops.mkldnn._reorder_linear_weight(weight.detach(), None))


def linear(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` for an ``nn.Linear`` (or any layer, e.g. an int8 one, run as it is), with
    its packed weight where that applies."""
    if type(module) is not nn.Linear:
        return module(x)
    params = module._parameters  # not module.weight: nn.Module's __getattr__ costs 0.5 us
    weight = params["weight"]
    if not _usable(x, weight):
        return module(x)
    return torch.ops.mkldnn._linear_pointwise(
        x, _packed(module, "weight", weight), params["bias"], "none", [], "")


def table_linear(owner: nn.Module, name: str, x: torch.Tensor, weight: torch.Tensor
                 ) -> torch.Tensor | None:
    """``x @ weight^T`` with ``weight``'s packed copy kept on ``owner`` under ``name`` (the
    tied output table), or None where packing does not apply (the caller then takes its own
    path)."""
    if not _usable(x, weight):
        return None
    return torch.ops.mkldnn._linear_pointwise(x, _packed(owner, name, weight), None, "none",
                                              [], "")


def joined_weights(owner: nn.Module, name: str, layers: list[nn.Linear], pack: bool = False,
                   tensors: list[torch.Tensor] | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The weights and biases of ``nn.Linear`` layers of one input joined along the outputs
    (the weight packed with ``pack``), kept on ``owner`` under ``name`` and joined again when
    any of them changes. ``tensors``: their weights and biases in order, where the caller
    has them at hand."""
    def join() -> tuple[torch.Tensor, torch.Tensor]:
        weight = torch.cat([m.weight.detach() for m in layers])
        if pack:
            weight = torch.ops.mkldnn._reorder_linear_weight(weight, None)
        return weight, torch.cat([m.bias.detach() for m in layers])

    if tensors is None:
        tensors = [t for m in layers for t in (m.weight, m.bias)]
    return derived(owner, name, tensors, join)


def joined_linear(owner: nn.Module, name: str, layers: list[nn.Module], x: torch.Tensor
                  ) -> torch.Tensor | None:
    """``torch.cat([layer(x) for layer in layers], -1)`` for ``nn.Linear`` layers of one input
    as one product with their weights and biases joined and packed (:func:`joined_weights`),
    or None where packing does not apply. A decoding step's few rows then stream three
    attention projections in one kernel instead of three; oneDNN sums each output over the
    inputs in the same order either way (the outputs were bit-identical to separate products
    at 1 to 908 rows, fp32 and bf16)."""
    tensors = []
    for m in layers:  # a plain loop, as in same_tensors: every decoding step runs it
        if type(m) is not nn.Linear:
            return None
        weight, bias = m._parameters["weight"], m._parameters["bias"]
        if bias is None or not _usable(x, weight):
            return None
        tensors += (weight, bias)
    weight, bias = joined_weights(owner, name, layers, pack=True, tensors=tensors)
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
