"""Text-to-image: sample image codes from a caption, decode them with the VQGAN, keep the
best (ranked by CLIP, or by the samples' log-probability). The sampling and ranking live in
:mod:`ofa.imagegen.imagine`; this entry declares the task to the layers (inputs, options,
the files it needs beside the model, the result fields)."""

from __future__ import annotations

import base64
import io
from typing import Any

from ..errors import InputError
from .base import Task, TaskField

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


def check_count(value: Any, what: str, low: int, high: int) -> int:
    """``value`` if it is an integer in [low, high]; an InputError naming ``what`` else."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(f"{what} must be an integer from {low} to {high}, got {value!r}")
    return value


class ImagineTask(Task):
    name = "imagine"
    summary = "Draw images of a caption (text-to-image)"
    kind = "draw"
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
               "samples": (list[int], "the sample number of each image")}
    result_key = "images"
    default_model = "ofa-large-image-gen"

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

    def to_json(self, result: dict) -> dict:
        out = {k: v for k, v in result.items() if k != "codes"}
        if "images" in out:
            out["images"] = [png_base64(im) for im in out["images"]]
        return out
