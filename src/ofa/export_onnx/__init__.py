"""ONNX export of OFA for inference outside PyTorch (onnxruntime and other ONNX runtimes).

An export folder holds two graphs, a manifest and the tokenizer files:

* ``encoder.onnx``: ``input_ids`` [B, L] int64 (BOS ... EOS, right-padded with PAD),
  ``images`` [B, 3, H, W] float32 (H = W = the export's image size, normalised as
  ``ofa.preprocess.ImageTransform`` does) and ``image_mask`` [B] bool (False: the sample has no
  image; give any image, e.g. zeros, its patches are ignored) ->
  ``encoder_hidden`` [B, S, D], ``encoder_padding_mask`` [B, S] bool (S = patches + L),
  ``cross_pos_k`` [H, S, D/H] (the encoder positions projected for the decoder's cross-attention
  bias, shared by every row) and, for every decoder layer i, ``cross_key_i`` /
  ``cross_value_i`` [B, heads, S, head_dim]: the cross-attention keys and values are computed
  once per source, never per decoding step.
* ``decoder_step.onnx``: one decoding step for N rows (N = B x beams: repeat the encoder rows as
  the search needs): ``input_ids`` [N, 1] (the newest token; BOS on the first step),
  ``encoder_padding_mask`` [N, S], ``cross_pos_k``, ``cross_key_i`` / ``cross_value_i`` [N, ...]
  and ``past_key_i`` / ``past_value_i`` [N, heads, P, head_dim], the self-attention cache of the
  P tokens already decoded (P = 0 on the first step: pass arrays with a zero-length axis) ->
  ``logits`` [N, 1, V] and ``present_key_i`` / ``present_value_i`` [N, heads, P + 1, head_dim],
  the next step's past. The step index is P itself (the length of the past), so there is no
  separate position input; a beam search reorders the rows of the present arrays as it picks
  parents. Decoder tokens are text tokens that are never PAD (image-code generation, OFA's
  text-to-image mode, is not exported).
* ``manifest.json``: names, dtypes and shapes of every input and output, the opset, the model
  config, special token ids, image size and normalisation, and the check's results;
  ``vocab.json`` + ``merges.txt``: the tokenizer (``OFATokenizer.from_dir`` reads the folder).

The exporter is ``torch.onnx.export(..., dynamo=True)`` (torch.export + onnxscript), the
default of torch >= 2.9: the TorchScript one is deprecated and bakes every Python-side int
(such as the decoder's past length) into the graph. The model's forward passes skip work on
data-dependent conditions (``if padding.any()``) that torch.export cannot trace, so the graphs
(``graphs.py``) are small adapter modules that run the model's own submodules and its
branch-free bias and mask functions (``OFAEncoder.layer_bias``, ``key_padding_bias``,
``causal_padding_bias``, ``cross_attention_bias``) without those shortcuts (multiplying by an
all-ones mask or adding zeros where the model skips the work, which gives identical numbers).
The decoder step tabulates its position terms (which depend on the position only) for every
decoder position at export time, so a step does no position projections.

Modules: ``export`` (:func:`export_onnx`), ``runtime`` (:class:`ONNXModel`, onnxruntime),
``check`` (:func:`check_onnx`: both graphs against the PyTorch model and a greedy decode on
both), ``common`` (names and helpers they share); ``ofa export onnx`` is in ``ofa.cli``.
"""


from .check import check_onnx
from .common import (
    DECODER_FILE,
    DEFAULT_OPSET,
    ENCODER_FILE,
    MANIFEST_FILE,
    OnnxCheckError,
    fp32_cpu,
)
from .export import export_onnx
from .runtime import ONNXModel, Step

__all__ = ["export_onnx", "check_onnx", "ONNXModel", "Step", "OnnxCheckError",
           "fp32_cpu", "ENCODER_FILE", "DECODER_FILE", "MANIFEST_FILE", "DEFAULT_OPSET"]
