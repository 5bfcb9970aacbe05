"""What the export, the runtime and the check share: file names, opsets, the graphs' input
and output names, the optional-dependency check, and the model adapters."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..errors import InputError, OFAError
from ..model.config import BOS_ID, EOS_ID, PAD_ID

if TYPE_CHECKING:
    from ..model.ofa import OFAModel
    from ..tokenizer import OFATokenizer

ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder_step.onnx"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "ofa-onnx"
MANIFEST_VERSION = 1
DEFAULT_OPSET = 18  # the oldest opset the dynamo exporter targets; onnxruntime >= 1.14 runs it
MIN_OPSET = 18
MAX_OPSET = 23  # the newest the torch 2.13 exporter writes
INSTALL_HINT = ('ONNX export needs the onnx extra: pip install "ofa-vl[onnx]" '
                "(onnx, onnxscript, onnxruntime)")
# external weights above this many bytes (protobuf files cannot exceed 2 GiB)
EXTERNAL_DATA_BYTES = 1_500_000_000


class OnnxCheckError(OFAError):
    """The exported graphs do not reproduce the PyTorch model."""


def require(*modules: str) -> None:
    import importlib

    if "onnxscript" in modules and _torch_version() < (2, 6):
        raise InputError(f"ONNX export needs torch >= 2.6 (its torch.export-based exporter); "
                         f"this is torch {torch.__version__}")
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            raise InputError(f"{INSTALL_HINT}; {name} is not installed") from None


def _torch_version() -> tuple[int, int]:
    major, minor = torch.__version__.split(".")[:2]
    return int(major), int(minor)


def io_names(num_layers: int) -> dict[str, list[str]]:
    """Input and output names of both graphs, in their positional order."""
    cross = [f"cross_{kind}_{i}" for i in range(num_layers) for kind in ("key", "value")]
    past = [f"past_{kind}_{i}" for i in range(num_layers) for kind in ("key", "value")]
    present = [f"present_{kind}_{i}" for i in range(num_layers) for kind in ("key", "value")]
    return {
        "encoder_inputs": ["input_ids", "images", "image_mask"],
        "encoder_outputs": ["encoder_hidden", "encoder_padding_mask", "cross_pos_k", *cross],
        "decoder_inputs": ["input_ids", "encoder_padding_mask", "cross_pos_k", *cross, *past],
        "decoder_outputs": ["logits", *present],
    }


def example_source(cfg, image_size: int, batch: int = 2) -> tuple[torch.Tensor, ...]:
    """A padded batch of 2 (one sample without an image) to trace with."""
    g = torch.Generator().manual_seed(0)
    lengths = [7, 5][:batch] + [6] * max(0, batch - 2)
    ids = torch.full((batch, max(lengths)), PAD_ID, dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, 0], ids[i, n - 1] = BOS_ID, EOS_ID
        ids[i, 1:n - 1] = torch.randint(4, min(cfg.vocab_size, 1000), (n - 2,), generator=g)
    images = torch.randn(batch, 3, image_size, image_size, generator=g)
    mask = torch.ones(batch, dtype=torch.bool)
    mask[-1] = False
    return ids, images, mask


def unwrap(model) -> tuple[OFAModel, OFATokenizer | None, int | None]:
    """The ``OFAModel`` in ``model`` (itself or an ``ofa.OFA``), its tokenizer and image size."""
    from ..model.ofa import OFAModel

    if isinstance(model, OFAModel):
        return model, None, None
    if hasattr(model, "model") and isinstance(model.model, OFAModel):  # an ofa.api.OFA
        return model.model, model.tokenizer, model.image_size
    raise InputError(f"expected an OFAModel or an ofa.OFA, got {type(model).__name__}")


def fp32_cpu(model: OFAModel) -> OFAModel:
    """The model itself when already fp32 on CPU, else an fp32 CPU copy."""
    p = model.embed_tokens.weight
    if p.dtype == torch.float32 and p.device.type == "cpu":
        return model
    from ..model.ofa import OFAModel

    with torch.device("meta"):
        copy = OFAModel(model.config)
    copy = copy.to_empty(device="cpu")
    copy.rebuild_buffers()
    copy.load_state_dict({k: v.detach().to("cpu", torch.float32)
                          for k, v in model.state_dict().items()})
    return copy.eval()


