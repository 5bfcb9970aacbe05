"""Text-to-image as OFA's official evaluation runs it: sample image codes from the caption,
decode them with the VQGAN, rank the images with CLIP.

OFA-Sys/OFA ``data/mm_data/image_gen_dataset.py`` (prompt, at most 64 caption words),
``tasks/mm_tasks/image_gen.py`` (``inference_image``: codes = tokens[:-1] - 50265 on a
code_image_size / 8 grid, 32 x 32 for the released models; ``compute_text_similarity``:
cosine with the caption, sorted) and
``run_scripts/image_gen/evaluate_image_gen.sh`` (24 samples, top-k 256, temperature 1.0,
exactly 1024 codes, codes-only constraint ``50265,58457``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image as PILImage
from tqdm import tqdm

from ..errors import InputError
from ..generate import GenerationConfig, generate, on_checkpoint
from ..tasks.imagine import ImagineTask, caption_words
from ..tokenizer import CODE_OFFSET, NUM_CODES
from .vqgan_io import load_vqgan, to_uint8, tokens_to_codes

if TYPE_CHECKING:
    from PIL import Image

    from ..model import OFAModel
    from ..tokenizer import OFATokenizer
    from .clip import CLIPReranker
    from .rank import CaptionRanker
    from .vqgan import VQGAN

    Ranker = CLIPReranker | CaptionRanker  # anything with .name and .scores(pixels, caption)

SAMPLES = 24  # evaluate_image_gen.sh --beam=24 with sampling
TOP_K = 256
DECODE_BATCH = 8  # images per VQGAN call: its activations at 256 px dominate memory


def generation_config(samples: int, seed: int | None, grid: int = 32,
                      num_codes: int = NUM_CODES) -> GenerationConfig:
    """``samples`` independent draws of exactly ``grid**2`` codes (the official 32 x 32 =
    1024), top-k 256 at temperature 1, among the first ``num_codes`` code tokens (the
    VQGAN's codebook: all 8192 for the official one)."""
    n = grid * grid
    return GenerationConfig(beam_size=samples, nbest=samples, sampling=True, top_k=TOP_K,
                            temperature=1.0, min_len=n, max_len_a=0, max_len_b=n,
                            constraint_range=(CODE_OFFSET, CODE_OFFSET + num_codes),
                            gen_code=True, seed=seed)


@dataclass
class Imagined:
    """The best ``top`` samples of one caption, best first."""

    text: str
    images: list[Image.Image]
    scores: list[float]  # CLIP cosine with the caption (or the sample's log-prob: no CLIP)
    codes: torch.Tensor  # [top, grid, grid] VQGAN codes
    ranked_by: str  # "clip", "caption" or "logprob"
    indices: list[int] = field(default_factory=list)  # sample number of each kept image


def _positive(value: Any, what: str) -> int:
    if type(value) is not int or value < 1:
        raise InputError(f"{what} must be a positive integer, got {value!r}")
    return value


def resolve_vqgan(vqgan: str | os.PathLike[str] | VQGAN | None, model_dir: Path | None,
                  device: torch.device, hint: str = "") -> VQGAN:
    """The VQGAN given, or the ``vqgan/`` folder beside the model; an InputError otherwise
    (``hint``: how the model's registry entry says to get one)."""
    from .vqgan import VQGAN

    if isinstance(vqgan, VQGAN):
        return vqgan
    if vqgan is None:
        bundled = None if model_dir is None else model_dir / "vqgan"
        if bundled is None or not bundled.is_dir():
            raise InputError(hint or "text-to-image needs the VQGAN image tokenizer: pass "
                             "vqgan=PATH (--vqgan), e.g. the vqgan/ folder of OFA's image_gen "
                             "release")
        vqgan = bundled
    return load_vqgan(vqgan, device=device)


DRAWER_DIR = "draw"  # beside a model that captions but does not draw: the model that draws


def resolve_drawer(model: OFAModel, model_dir: Path | None) -> OFAModel:
    """The model that draws for ``model``: the text-to-image model in the ``draw/`` folder
    beside it (the embedded demo ships its drawing model there, and ranks its drawings by its
    own captioning), else ``model`` itself."""
    from ..checkpoints import load_model
    from ..errors import CheckpointError

    folder = None if model_dir is None else model_dir / DRAWER_DIR
    if folder is None or not folder.is_dir():
        return model
    weights = model.embed_tokens.weight
    drawer = load_model(folder, device=weights.device, dtype=weights.dtype)
    if drawer.config.vocab_size != model.config.vocab_size:
        raise CheckpointError(f"{folder}: the drawing model's vocabulary "
                              f"({drawer.config.vocab_size} ids) is not its captioner's "
                              f"({model.config.vocab_size}): they share one tokenizer")
    return drawer


def resolve_clip(clip: str | os.PathLike[str] | CLIPReranker | None | bool,
                 model_dir: Path | None, device: torch.device) -> CLIPReranker | None:
    """The CLIP reranker given, or the ``clip/`` folder beside the model, or None (no
    reranking: ``clip=False``, or none found)."""
    from .clip import CLIPReranker

    if clip is False:
        return None
    if isinstance(clip, CLIPReranker):
        return clip
    if clip is None or clip is True:
        bundled = None if model_dir is None else model_dir / "clip"
        if bundled is None or not bundled.is_dir():
            if clip is True:
                raise InputError("ranking by CLIP (the official ranking and CLIP score) "
                                 "needs CLIP weights: pass clip=PATH (--clip), e.g. OFA's "
                                 "clip/ViT-B-16.pt")
            return None
        weights = next((p for p in sorted(bundled.iterdir())
                        if p.suffix in (".pt", ".pth", ".bin", ".safetensors")), None)
        if weights is None:
            raise InputError(f"{bundled} holds no CLIP weights (.pt, .safetensors)")
        clip = weights
    return CLIPReranker.from_file(clip, device=device)


def imagine(model: OFAModel, tokenizer: OFATokenizer, text: str, vqgan: VQGAN,
            ranker: Ranker | None = None, *,
            samples: int = SAMPLES, top: int = 4, seed: int | None = 0,
            batch_size: int | None = None, progress: bool = False) -> Imagined:
    """Sample ``samples`` images of ``text`` and keep the ``top`` best (module docstring).

    ``batch_size`` samples are decoded together (default: all), which bounds memory: the
    self-attention cache grows with samples x 1024 steps. The draws depend on ``seed`` and
    ``batch_size`` (one random stream runs through the batches in order).
    """
    caption = caption_words(text)
    samples = _positive(samples, "samples")
    top = min(_positive(top, "top"), samples)
    batch = min(_positive(batch_size, "batch_size") if batch_size is not None else samples,
                samples)
    device = model.embed_tokens.weight.device
    ids = torch.tensor([ImagineTask().prepare(tokenizer, "", caption).source], device=device)
    # the decoder's code grid: code_image_size / 8 (the official 256 px: 32 x 32 codes)
    grid = model.config.code_image_size // 8
    random = torch.Generator(device=device)
    if seed is not None:
        random.manual_seed(seed)
    else:
        random.seed()
    tokens, logprobs = [], []
    steps = grid * grid + 1  # the codes and the forced EOS
    bar = tqdm(total=steps * -(-samples // batch), disable=not progress, unit="step",
               dynamic_ncols=True, desc="imagine")
    tick: Callable[[], None] = lambda: bar.update(1)  # noqa: E731
    try:
        with torch.inference_mode(), on_checkpoint(tick):
            for start in range(0, samples, batch):
                n = min(batch, samples - start)
                config = generation_config(n, None, grid, vqgan.config.n_embed)
                [hyps] = generate(model, ids, None, None, config, generator=random)
                tokens += [h.tokens for h in hyps]
                logprobs += [float(h.score) for h in hyps]
    finally:
        bar.close()
    codes = tokens_to_codes(torch.stack(tokens).cpu(), grid)
    vq_device = next(vqgan.parameters()).device
    with torch.inference_mode():
        pixels = torch.cat([to_uint8(vqgan.decode_codes(chunk.to(vq_device)).float().cpu())
                            for chunk in codes.split(DECODE_BATCH)])
    images = [PILImage.fromarray(a) for a in pixels.numpy()]  # [H, W, 3] uint8: RGB
    if ranker is not None:
        scores, how = ranker.scores(pixels, caption).float(), ranker.name
    else:  # the samples' own log-probabilities
        scores, how = torch.tensor(logprobs), "logprob"
    keep = torch.sort(scores, descending=True, stable=True).indices[:top].tolist()
    return Imagined(caption, [images[i] for i in keep], [float(scores[i]) for i in keep],
                    codes[keep], how, keep)
