"""Text-to-image: sample image codes from a caption, decode them with the VQGAN, keep the
best (ranked by CLIP, by the model's own caption likelihood, or by the samples'
log-probability). The sampling and ranking live in :mod:`ofa.imagegen.imagine`; this entry
declares the task to the layers (inputs, options, the files it needs beside the model, the
result fields), its prompt, its training target (the image's VQGAN codes, as OFA's
``coco_vqgan_*.tsv`` carry them) and its score on ShapesWorld captions (what
:mod:`ofa.data.shapes_check` reads in the best image).

OFA-Sys/OFA ``data/mm_data/image_gen_dataset.py``: the prompt, the caption cut to its first
``max_src_length`` (64) whitespace words, the codes as targets offset into the code tokens.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from typing import Any

from ..errors import InputError
from ..tokenizer import CODE_OFFSET, NUM_CODES, OFATokenizer
from .base import Example, Task, TaskField, record_weight
from .text import require_text

PROMPT = " what is the complete image? caption: {}"
MAX_CAPTION_WORDS = 64

SAMPLES = 24  # OFA-Sys/OFA run_scripts/image_gen/evaluate_image_gen.sh: --beam=24, sampling
RANKS = ("clip", "caption", "logprob")
TOP = 4
MAX_SAMPLES = 64
MAX_SEED = 2**31 - 1


def png_base64(image: Any) -> str:
    """A PIL image as base64 PNG (lossless: the VQGAN's uint8 pixels survive)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def caption_words(text: Any) -> str:
    """The caption as the prompt takes it: its first 64 whitespace-separated words."""
    return " ".join(require_text(text, "text").strip().split()[:MAX_CAPTION_WORDS])


def record_codes(record: dict) -> list[int]:
    """A record's image codes: a square grid's worth of integers in [0, 8192)."""
    codes = record.get("codes")
    if (not isinstance(codes, list) or not codes
            or not all(type(c) is int and 0 <= c < NUM_CODES for c in codes)):
        raise InputError(f"codes must be a list of VQGAN codes (integers 0-{NUM_CODES - 1})")
    if math.isqrt(len(codes)) ** 2 != len(codes):
        raise InputError(f"codes must fill a square grid, got {len(codes)}")
    return codes


def check_count(value: Any, what: str, low: int, high: int) -> int:
    """``value`` if it is an integer in [low, high]; an InputError naming ``what`` else."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(f"{what} must be an integer from {low} to {high}, got {value!r}")
    return value


class ImagineTask(Task):
    name = "imagine"
    summary = "Draw images of a caption (text-to-image)"
    kind = "draw"
    demo = True  # the embedded shapes-demo model draws ShapesWorld scenes
    image = "none"
    fields = (
        TaskField("text", "the caption to draw, e.g. 'a dog running on the beach'",
                  required=True),
        TaskField("samples", f"images sampled per caption (default: {SAMPLES}, the official "
                             "evaluation)", kind="int", per_input=False, default=SAMPLES,
                  bounds=(1, MAX_SAMPLES)),
        TaskField("top", f"best images kept (default: {TOP})", kind="int", per_input=False,
                  default=TOP, bounds=(1, MAX_SAMPLES)),
        TaskField("seed", "random seed of the sampling (default: 0)", kind="int",
                  per_input=False, default=0, bounds=(0, MAX_SEED)),
        TaskField("rank", "how the samples are ranked: clip (similarity with the caption, the "
                          "official ranking), caption (the model's own log p(caption | image)) "
                          "or logprob (the sample's log-probability); default: clip when CLIP "
                          "weights are there, else caption for a model that also captions, "
                          "else logprob", kind="choice", per_input=False, choices=RANKS),
    )
    parts = (
        TaskField("vqgan", "VQGAN image tokenizer: a taming folder or last.ckpt, OFA's vqgan/ "
                           "folder or ModelScope's files (default: vqgan/ beside the model)",
                  per_input=False),
        TaskField("clip", "CLIP ViT-B/16 weights for reranking: OpenAI's ViT-B-16.pt or a "
                          "state dict (default: clip/ beside the model, if there)",
                  per_input=False),
    )
    outputs = {"images": (list[str], "the best images, best first, as base64 PNG"),
               "scores": (list[float], "each image's CLIP cosine with the caption (ranked by "
                                       "clip) or its sample's log-probability"),
               "ranked_by": (str, "clip, caption or logprob"),
               "samples": (list[int], "the sample number of each image"),
               "codes": (list[list[int]], "each image's VQGAN codes, row by row")}
    result_key = "images"
    default_model = "ofa-large-image-gen"
    primary_metric = "shapes"
    record_fields = ("text",)  # + "codes" (the image's VQGAN codes) to train on

    def __init__(self, samples: int = SAMPLES, top: int = TOP, seed: int = 0,
                 rank: str | None = None) -> None:
        self.samples, self.top, self.seed, self.rank = samples, top, seed, rank

    def configure(self, model_task: str | None = None, *, samples: int | None = None,
                  top: int | None = None, seed: int | None = None,
                  rank: str | None = None) -> ImagineTask:
        samples = check_count(SAMPLES if samples is None else samples, "samples", 1,
                              MAX_SAMPLES)
        top = check_count(TOP if top is None else top, "top", 1, MAX_SAMPLES)
        seed = check_count(0 if seed is None else seed, "seed", 0, MAX_SEED)
        if rank is not None and rank not in RANKS:
            raise InputError(f"rank must be one of {', '.join(RANKS)}, got {rank!r}")
        return ImagineTask(samples, min(top, samples), seed, rank)

    def one_line(self, result: dict) -> str:
        scores = ", ".join(f"{s:.4f}" for s in result["scores"])
        return f"{len(result['images'])} images ranked by {result['ranked_by']}: {scores}"

    def prepare(self, tokenizer: OFATokenizer, label: str, text: str = "") -> Example:
        return Example(label, tokenizer.encode(PROMPT.format(caption_words(text))))

    def to_json(self, result: dict) -> dict:
        out = dict(result)
        if "images" in out:
            out["images"] = [png_base64(im) for im in out["images"]]
        if "codes" in out:
            out["codes"] = [[int(c) for c in grid.reshape(-1)] for grid in out["codes"]]
        return out

    def reference(self, result: dict) -> dict:
        return {"codes": result["codes"][0]}

    # ------------------------------------------------------------------ data records
    def check_record(self, record: dict) -> None:
        caption_words(record["text"])
        if record.get("codes") is not None:
            record_codes(record)

    def target_tokens(self, tokenizer: OFATokenizer, record: dict, example: Example,
                      patch: int | None) -> tuple[list[int], float]:
        if record.get("codes") is None:
            raise InputError(f"record {record.get('id', '?')}: an imagine record needs "
                             "'codes' (its image's VQGAN codes) to train on")
        return [CODE_OFFSET + c for c in record_codes(record)], record_weight(record)

    def score(self, records: Sequence[dict], predictions: Sequence[Any], full: bool
              ) -> tuple[dict[str, float], dict[str, str]]:
        """On ShapesWorld captions: the shares of records whose best image shows every
        requested shape with its colour and kind (``colors``), also its size (``sizes``), in
        the caption's left-to-right order (``positions``), and all three (``shapes``)."""
        from PIL import Image

        from ..data.shapes_check import check, parse_caption

        try:
            for r in records:
                parse_caption(r["text"])
        except InputError as e:
            return {}, {"shapes": f"not computed: {e} (the checker reads ShapesWorld only)"}
        hits = {"colors": 0, "sizes": 0, "positions": 0, "shapes": 0}
        for r, images in zip(records, predictions, strict=True):
            if not images:  # a failed record counts as wrong
                continue
            image = Image.open(io.BytesIO(base64.b64decode(images[0]))).convert("RGB")
            got = check(image, r["text"])
            hits["colors"] += got.colors
            hits["sizes"] += got.sizes
            hits["positions"] += got.positions
            hits["shapes"] += got.colors and got.sizes and got.positions
        return {k: v / len(records) for k, v in hits.items()}, {}
