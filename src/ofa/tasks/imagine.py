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
        TaskField("rerank", "rank by CLIP similarity with the caption (default: when CLIP "
                            "weights are attached; otherwise by the samples' log-probability)",
                  kind="flag", per_input=False, off="no-rerank"),
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
               "ranked_by": (str, "clip or logprob"),
               "samples": (list[int], "the sample number of each image")}
    result_key = "images"
    default_model = "ofa-large-image-gen"

    def __init__(self, samples: int = SAMPLES, top: int = TOP, seed: int = 0,
                 rerank: bool | None = None) -> None:
        self.samples, self.top, self.seed, self.rerank = samples, top, seed, rerank

    def configure(self, model_task: str | None = None, *, samples: int | None = None,
                  top: int | None = None, seed: int | None = None,
                  rerank: bool | None = None) -> ImagineTask:
        samples = check_count(SAMPLES if samples is None else samples, "samples", 1,
                              MAX_SAMPLES)
        top = check_count(TOP if top is None else top, "top", 1, MAX_SAMPLES)
        seed = check_count(0 if seed is None else seed, "seed", 0, MAX_SEED)
        if rerank is not None and not isinstance(rerank, bool):
            raise InputError(f"rerank must be true or false, got {rerank!r}")
        return ImagineTask(samples, min(top, samples), seed, rerank)

    def one_line(self, result: dict) -> str:
        scores = ", ".join(f"{s:.4f}" for s in result["scores"])
        return f"{len(result['images'])} images ranked by {result['ranked_by']}: {scores}"

    def to_json(self, result: dict) -> dict:
        out = {k: v for k, v in result.items() if k != "codes"}
        if "images" in out:
            out["images"] = [png_base64(im) for im in out["images"]]
        return out
