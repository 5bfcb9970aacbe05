"""OpenAI CLIP (ViT-B/16) as OFA's text-to-image reranker.

OFA samples many images per caption and keeps the one CLIP likes best
(OFA-Sys/OFA tasks/mm_tasks/image_gen.py::compute_text_similarity): the score is the cosine of
the L2-normalised image and text features, with no logit scale, computed on the uint8 images
after the VQGAN decode. This module is that reranker, without torchvision or open_clip:

* the model: a port of github.com/openai/CLIP clip/model.py (MIT, Copyright (c) 2021 OpenAI),
  ViT image tower and causal text transformer, with OpenAI's state-dict names and **QuickGELU**
  (``x * sigmoid(1.702 x)``; plain GELU shifts the features by ~3e-2);
* the preprocessing of clip.py::_transform: bicubic resize of the shorter side to 224, centre
  crop, OpenAI mean/std; done with PIL, bit-identical to torchvision's;
* the tokenizer of clip/simple_tokenizer.py: CLIP's own byte-level BPE (run by the
  ``tokenizers`` library), SOT/EOT, 77 positions, an error for longer captions
  (``clip.tokenize(truncate=False)``, as OFA calls it).

Weights: OpenAI's ``ViT-B-16.pt`` (a TorchScript archive, read without running it) or a plain
state dict; see :mod:`ofa.imagegen.clip_io`. The vocabulary ``bpe_simple_vocab_16e6.txt.gz`` is
not inside the weights: it ships with the open_clip_torch package and github.com/openai/CLIP.

    reranker = CLIPReranker.from_file("clip/ViT-B-16.pt", vocab="bpe_simple_vocab_16e6.txt.gz")
    best = reranker.rerank(images, "a cup of coffee", top=1)   # [(index, cosine)]
"""

from __future__ import annotations

import gzip
import html
import os
import re
import unicodedata
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..errors import CheckpointError, InputError
from ..preprocess import ImageInput, load_image
from .clip_io import VOCAB_NAME, find_vocab, read_clip_state_dict

__all__ = ["CLIP", "OPENAI_MEAN", "OPENAI_STD", "CLIPConfig", "CLIPReranker", "CLIPTokenizer",
           "preprocess"]

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


# ----------------------------------------------------------------------------- model
@dataclass(frozen=True)
class CLIPConfig:
    """OpenAI CLIP ViT sizes; the defaults are ViT-B/16 (149.6 M parameters)."""

    embed_dim: int = 512
    image_resolution: int = 224
    vision_layers: int = 12
    vision_width: int = 768
    vision_patch_size: int = 16
    context_length: int = 77
    vocab_size: int = 49408
    text_width: int = 512
    text_layers: int = 12

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor], where: str = "CLIP weights"
                        ) -> CLIPConfig:
        """Sizes read off the tensors, as clip.model.build_model does (heads = width / 64)."""
        def dim(key: str, ndim: int, axis: int) -> int:
            if key not in state:
                hint = " (ResNet CLIP models are not supported)" if key.startswith(
                    "visual.") and "visual.layer1.0.conv1.weight" in state else ""
                raise CheckpointError(f"{where}: no {key}: not a CLIP ViT state dict{hint}")
            if state[key].dim() != ndim:
                raise CheckpointError(f"{where}: {key} has shape {tuple(state[key].shape)}, "
                                      f"expected {ndim} dimensions")
            return int(state[key].shape[axis])

        def count(prefix: str) -> int:
            return sum(1 for k in state if k.startswith(prefix) and k.endswith(
                ".attn.in_proj_weight") and k[len(prefix):].split(".")[0].isdigit())

        patch = dim("visual.conv1.weight", 4, 3)
        positions = dim("visual.positional_embedding", 2, 0)
        grid = round((positions - 1) ** 0.5)
        if grid * grid + 1 != positions:
            raise CheckpointError(f"{where}: visual.positional_embedding has {positions} rows, "
                                  "not a square grid of patches plus the class token")
        cfg = cls(embed_dim=dim("text_projection", 2, 1), image_resolution=patch * grid,
                  vision_layers=count("visual.transformer.resblocks."),
                  vision_width=dim("visual.conv1.weight", 4, 0), vision_patch_size=patch,
                  context_length=dim("positional_embedding", 2, 0),
                  vocab_size=dim("token_embedding.weight", 2, 0),
                  text_width=dim("ln_final.weight", 1, 0),
                  text_layers=count("transformer.resblocks."))
        for name, width in (("vision", cfg.vision_width), ("text", cfg.text_width)):
            if width % 64:
                raise CheckpointError(f"{where}: {name} width {width} is not a multiple of 64 "
                                      "(CLIP uses 64-wide attention heads)")
        return cfg


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the input dtype (OpenAI's fp16 recipe)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), self.normalized_shape, self.weight.float(),
                            self.bias.float(), self.eps).to(x.dtype)


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class Attention(nn.Module):
    """nn.MultiheadAttention's parameters (``in_proj_*``, ``out_proj``), batch first, SDPA."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        n, length, width = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(n, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.out_proj(y.transpose(1, 2).reshape(n, length, width))


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = Attention(width, heads)
        self.ln_1 = LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(width, 4 * width)),
                                              ("gelu", QuickGELU()),
                                              ("c_proj", nn.Linear(4 * width, width))]))
        self.ln_2 = LayerNorm(width)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), causal)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, causal: bool) -> None:
        super().__init__()
        self.causal = causal
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, width // 64)
                                       for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, self.causal)
        return x


class VisionTransformer(nn.Module):
    def __init__(self, cfg: CLIPConfig) -> None:
        super().__init__()
        w, grid = cfg.vision_width, cfg.image_resolution // cfg.vision_patch_size
        self.conv1 = nn.Conv2d(3, w, cfg.vision_patch_size, cfg.vision_patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.empty(w))
        self.positional_embedding = nn.Parameter(torch.empty(grid * grid + 1, w))
        self.ln_pre = LayerNorm(w)
        self.transformer = Transformer(w, cfg.vision_layers, causal=False)
        self.ln_post = LayerNorm(w)
        self.proj = nn.Parameter(torch.empty(w, cfg.embed_dim))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.conv1(pixels.to(self.conv1.weight.dtype)).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.transformer(self.ln_pre(x))
        return self.ln_post(x[:, 0]) @ self.proj


class CLIP(nn.Module):
    """OpenAI CLIP with a ViT image tower; ``encode_*`` return unnormalised features."""

    def __init__(self, config: CLIPConfig | None = None) -> None:
        super().__init__()
        cfg = self.config = config or CLIPConfig()
        self.visual = VisionTransformer(cfg)
        self.transformer = Transformer(cfg.text_width, cfg.text_layers, causal=True)
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.text_width)
        self.positional_embedding = nn.Parameter(torch.empty(cfg.context_length, cfg.text_width))
        self.ln_final = LayerNorm(cfg.text_width)
        self.text_projection = nn.Parameter(torch.empty(cfg.text_width, cfg.embed_dim))
        self.logit_scale = nn.Parameter(torch.empty(()))  # kept for loading; OFA's score ignores it

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """[N, 3, R, R] normalised pixels -> [N, embed_dim]."""
        return self.visual(pixels)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """[N, context] token ids (EOT the largest id of each row) -> [N, embed_dim]."""
        dtype = self.visual.conv1.weight.dtype
        x = self.token_embedding(tokens).to(dtype) + self.positional_embedding.to(dtype)
        x = self.ln_final(self.transformer(x))
        return x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)] @ \
            self.text_projection


def load_clip_weights(model: CLIP, state: Mapping[str, torch.Tensor], where: str) -> None:
    """Copy OpenAI-named weights into ``model``; one line naming the key for any misfit."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for key, shape in expected.items():
        if key not in state:
            raise CheckpointError(f"{where}: {key} is missing")
        if tuple(state[key].shape) != shape:
            raise CheckpointError(f"{where}: {key} has shape {tuple(state[key].shape)}, "
                                  f"expected {shape}")
    extra = sorted(set(state) - set(expected))
    if extra:
        raise CheckpointError(f"{where}: unexpected tensor {extra[0]}"
                              + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""))
    model.load_state_dict(dict(state))


# ----------------------------------------------------------------------------- inputs
def preprocess(images: Sequence[ImageInput] | torch.Tensor, size: int = 224) -> torch.Tensor:
    """Images -> [N, 3, size, size] float32, as clip.py::_transform(size) makes them.

    Accepts PIL images, uint8 arrays or tensors ([H, W, 3] or [3, H, W]; a [N, H, W, 3] tensor
    is N images), paths or encoded bytes. Resize: the shorter side to ``size`` and the longer
    to ``int(size * long / short)`` with PIL bicubic; crop at ``round((new - size) / 2)``.
    """
    if isinstance(images, torch.Tensor | np.ndarray) and images.ndim == 4:
        images = list(images)
    if not isinstance(images, Sequence) or isinstance(images, str | bytes) or not images:
        raise InputError("expected a non-empty list of images")
    mean = torch.tensor(OPENAI_MEAN)[:, None, None]
    std = torch.tensor(OPENAI_STD)[:, None, None]
    out = []
    for image in images:
        img = load_image(image)
        w, h = img.size
        nw, nh = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
        if (nw, nh) != (w, h):
            img = img.resize((nw, nh), Image.BICUBIC)
        top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
        img = img.crop((left, top, left + size, top + size))
        x = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).float().div(255)
        out.append((x - mean) / std)
    return torch.stack(out)


# ftfy's fixes that matter for captions, for when ftfy is not installed (ftfy 6.3 fixes.py:
# fix_latin_ligatures, fix_character_width, uncurl_quotes; then NFC)
_LIGATURES = str.maketrans({"Ĳ": "IJ", "ĳ": "ij", "ŉ": "ʼn", "Ǳ": "DZ", "ǲ": "Dz", "ǳ": "dz",
                            "Ǆ": "DŽ", "ǅ": "Dž", "ǆ": "dž", "Ǉ": "LJ", "ǈ": "Lj", "ǉ": "lj",
                            "Ǌ": "NJ", "ǋ": "Nj", "ǌ": "nj", "ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl",
                            "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "ſt", "ﬆ": "st"})
_WIDTHS = str.maketrans({0x3000: " ", **{c: unicodedata.normalize("NFKC", chr(c))
                                         for c in range(0xFF01, 0xFFF0)
                                         if unicodedata.normalize("NFKC", chr(c)) != chr(c)}})
_SINGLE_QUOTES = re.compile("[\u02bc\u2018-\u201b]")
_DOUBLE_QUOTES = re.compile("[\u201c-\u201f]")


def _fix_text(text: str) -> str:
    """OpenAI's tokenizer runs ``ftfy.fix_text``: used when installed; otherwise its ligature,
    character-width and quote fixes and NFC (what is missing: mojibake, control characters)."""
    try:
        import ftfy
    except ImportError:
        text = text.translate(_LIGATURES).translate(_WIDTHS)
        text = _SINGLE_QUOTES.sub("'", _DOUBLE_QUOTES.sub('"', text))
        return unicodedata.normalize("NFC", text)
    return ftfy.fix_text(text)


class CLIPTokenizer:
    """CLIP's BPE (clip/simple_tokenizer.py) from ``bpe_simple_vocab_16e6.txt.gz``."""

    _MAX_VOCAB_BYTES = 32 << 20  # the real file unpacks to 1.7 MB
    _SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""

    def __init__(self, vocab: str | os.PathLike[str], context_length: int = 77) -> None:
        from tokenizers import Regex, Tokenizer, models, pre_tokenizers

        self.path, self.context_length = Path(vocab), context_length
        lines = self._read(self.path).split("\n")[1:49152 - 256 - 2 + 1]  # as OpenAI slices it
        merges = [tuple(line.split()) for line in lines if line]
        if not merges or any(len(m) != 2 for m in merges):
            raise CheckpointError(f"{self.path}: not a CLIP BPE merges file (expected a header "
                                  "line, then one pair of symbols per line)")
        # OpenAI's bytes_to_unicode order: the printable bytes stand for themselves (code
        # points < 256), the others for chr(256 + n) in byte order; so code-point order
        symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
        symbols = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
        symbols += ["<|startoftext|>", "<|endoftext|>"]
        vocab_ids = {s: i for i, s in enumerate(symbols)}
        self.sot, self.eot = len(symbols) - 2, len(symbols) - 1
        self.vocab_size = len(symbols)
        tok = Tokenizer(models.BPE(vocab_ids, merges, end_of_word_suffix="</w>"))
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(self._SPLIT), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        tok.add_special_tokens(["<|startoftext|>", "<|endoftext|>"])
        self._tok = tok

    @classmethod
    def _read(cls, path: Path) -> str:
        try:
            with open(path, "rb") as f:
                magic = f.read(2)
                f.seek(0)
                stream = gzip.GzipFile(fileobj=f) if magic == b"\x1f\x8b" else f
                data = stream.read(cls._MAX_VOCAB_BYTES + 1)
            if len(data) > cls._MAX_VOCAB_BYTES:
                raise CheckpointError(f"{path}: more than {cls._MAX_VOCAB_BYTES >> 20} MiB "
                                      "unpacked: not CLIP's BPE vocabulary")
            return data.decode("utf-8")
        except (OSError, EOFError, UnicodeDecodeError) as e:
            raise CheckpointError(f"cannot read CLIP vocabulary {path}: {e}") from None

    def encode(self, text: str) -> list[int]:
        """BPE ids of ``text`` (no SOT/EOT), cleaned and lower-cased like OpenAI's encoder."""
        from ..tokenizer import require_utf8

        text = html.unescape(html.unescape(_fix_text(require_utf8(text, "caption")))).strip()
        text = re.sub(r"\s+", " ", text).strip().lower()
        return self._tok.encode(text, add_special_tokens=False).ids

    def __call__(self, texts: str | Sequence[str]) -> torch.Tensor:
        """[N, context_length] int64: SOT, ids, EOT, zeros (clip.tokenize, truncate=False)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for i, text in enumerate(texts):
            ids = [self.sot, *self.encode(text), self.eot]
            if len(ids) > self.context_length:
                raise InputError(f"caption is {len(ids)} CLIP tokens with SOT/EOT, more than "
                                 f"CLIP's {self.context_length}: {text[:60]!r}...")
            out[i, :len(ids)] = torch.tensor(ids)
        return out


# ----------------------------------------------------------------------------- reranker
class CLIPReranker:
    """Scores images against a caption the way OFA picks its best samples."""

    name = "clip"  # how imagine() reports the ranking

    def __init__(self, model: CLIP, tokenizer: CLIPTokenizer | None = None,
                 batch_size: int = 16) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], vocab: str | os.PathLike[str] | None | bool
                  = None, *, device: str | torch.device = "cpu",
                  dtype: torch.dtype = torch.float32) -> CLIPReranker:
        """Load OpenAI's ``ViT-B-16.pt`` (TorchScript, not run) or a plain CLIP state dict.

        ``vocab``: path of ``bpe_simple_vocab_16e6.txt.gz``; None looks for it
        (:func:`ofa.imagegen.clip_io.find_vocab`); False loads no tokenizer (image features
        and token-id input only). ``dtype=torch.float16`` is OFA's GPU setting (LayerNorms stay
        float32, as in OpenAI's convert_weights); float32 is the reference.
        """
        if not Path(path).is_file():
            raise InputError(f"CLIP weights not found: {path}")
        found = None
        if vocab is not False:  # look for it first: fail before reading 600 MB of weights
            found = find_vocab(path) if vocab is None or vocab is True else Path(vocab)
            if found is None or not found.is_file():
                raise CheckpointError(
                    f"CLIP's BPE vocabulary {found or VOCAB_NAME} not found: pass vocab=PATH "
                    "(or set OFA_CLIP_VOCAB); the file ships in the open_clip_torch package "
                    "(open_clip/bpe_simple_vocab_16e6.txt.gz) and in github.com/openai/CLIP")
        state = read_clip_state_dict(path)
        config = CLIPConfig.from_state_dict(state, str(path))
        tokenizer = None if found is None else CLIPTokenizer(found, config.context_length)
        if tokenizer is not None and tokenizer.vocab_size != config.vocab_size:
            raise CheckpointError(f"{tokenizer.path} has {tokenizer.vocab_size} tokens, the "
                                  f"weights {config.vocab_size}: not this model's vocabulary")
        with torch.device("meta"):
            model = CLIP(config)
        model = model.to_empty(device=device)
        load_clip_weights(model, state, str(path))
        del state
        model.to(dtype)
        for module in model.modules():
            if isinstance(module, LayerNorm):
                module.float()
        return cls(model, tokenizer)

    @property
    def device(self) -> torch.device:
        return self.model.visual.conv1.weight.device

    @torch.inference_mode()
    def image_features(self, images: Sequence[ImageInput] | torch.Tensor) -> torch.Tensor:
        """[N, embed_dim] float32, unnormalised (``encode_image`` of the preprocessed images)."""
        pixels = preprocess(images, self.model.config.image_resolution)
        return torch.cat([self.model.encode_image(chunk.to(self.device)).float().cpu()
                          for chunk in pixels.split(self.batch_size)])

    @torch.inference_mode()
    def text_features(self, texts: str | Sequence[str] | torch.Tensor) -> torch.Tensor:
        """[M, embed_dim] float32, unnormalised. ``texts``: captions, or token ids [M, 77]."""
        if isinstance(texts, torch.Tensor):
            tokens = texts.reshape(-1, texts.shape[-1]).long()
        elif self.tokenizer is None:
            raise InputError("this CLIP reranker was loaded without a vocabulary: pass token "
                             "ids, or load it with vocab=PATH")
        else:
            tokens = self.tokenizer(texts)
        if tokens.shape[-1] != self.model.config.context_length:
            raise InputError(f"token ids must have {self.model.config.context_length} positions")
        return self.model.encode_text(tokens.to(self.device)).float().cpu()

    def scores(self, images: Sequence[ImageInput] | torch.Tensor,
               text: str | torch.Tensor) -> torch.Tensor:
        """[N] float32: cosine of each image with ``text`` (OFA's ``compute_text_similarity``)."""
        img = F.normalize(self.image_features(images), dim=-1)
        txt = F.normalize(self.text_features(text), dim=-1)
        if txt.shape[0] != 1:
            raise InputError("scores() takes one caption")
        return img @ txt[0]

    def rerank(self, images: Sequence[ImageInput] | torch.Tensor, text: str | torch.Tensor,
               top: int | None = None) -> list[tuple[int, float]]:
        """``(index, score)`` of the ``top`` best images (all when None), best first; equal
        scores keep their input order."""
        if top is not None and (type(top) is not int or top < 1):
            raise InputError(f"top must be a positive integer, got {top!r}")
        s = self.scores(images, text)
        order = torch.sort(s, descending=True, stable=True).indices[:top]
        return [(int(i), float(s[i])) for i in order]
