"""Text-to-image evaluation as OFA's official one runs it: draw images for every caption, keep
the one CLIP ranks best, report the CLIP score, and FID / IS of the kept images.

What the official evaluation does (OFA-Sys/OFA):

* ``run_scripts/image_gen/evaluate_image_gen.sh``: ``coco_vqgan_full_test.tsv``, 24 samples per
  caption (top-k 256, exactly 1024 codes), seed 42, then ``inception_score.py`` and
  ``fid_score.py`` on the ``top1`` folder, FID against ``gt_stat.npz``;
* ``tasks/mm_tasks/image_gen.py`` ``valid_step``: the samples ranked by CLIP cosine with the
  caption; the logged score is the mean over captions of the best cosine (:func:`clip_score`,
  reported x 100); the best image of each caption is written to ``top1/<caption>_0.png`` and
  all of them, best first, to ``all_results/<caption>_<rank>.png``;
* FID reference: ``gt_stat.npz`` holds the mean and covariance of the Inception features of
  the ground-truth COCO 2014 images, which OFA only resized (to 299 x 299, in ``fid_score.py``;
  OFA-Sys/OFA issue #295), computed with torchvision's ImageNet Inception-v3;
  ``inception_score.py`` uses that network too, with one split.

Here (:func:`run_imagegen_evaluation`): each record's best image goes to ``top1/<id>.png``
(the ``top`` best to ``ranked/<id>_<rank>.png`` when ``top`` > 1), one JSON line per record to
``predictions.jsonl``, then ``metrics.json`` and ``summary.md``. FID / IS need an Inception
weights file (:mod:`ofa.metrics.inception`): torchvision's ImageNet one reproduces OFA's
published protocol (with OFA's ``gt_stat.npz`` as the reference statistics, or the original
COCO images), the FID Inception gives the standard FID / IS that other papers report (against
the original images, or statistics saved by an earlier run). Differences from the official
run, all deliberate:

* images are keyed by record id, not by caption text: the official files are named after the
  caption, so a caption that appears twice keeps one image (the last written). FID and IS
  count one image per distinct caption as the official folder does (``distinct_captions``),
  the CLIP score averages over all records as ``valid_step`` does;
* each record draws from its own seed (derived from ``seed`` and its id), so a record's
  images do not depend on the order, the batch, or which records an interrupted run finished;
* OFA drops the last ``N mod 128`` images from FID (its loader's ``drop_last`` at batch size
  128), and strips "/" from the caption it gives CLIP (the caption is its file name): neither
  is reproduced.

Resuming reuses a record's image only if ``run.json`` shows the same model, VQGAN, CLIP and
sampling settings and the record's caption is unchanged (as :mod:`ofa.evaluate` does), and its
PNG is still there.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import InputError, OFAError
from ..evaluate import (
    RUN_FILE,
    append_predictions,
    check_ids,
    check_resumable,
    input_digest,
    read_predictions,
    run_identity,
    weights_fingerprint,
)
from ..files import replacing, write_atomic
from ..metrics.image_quality import (
    FIDStats,
    clip_score,
    frechet_distance,
    inception_features,
    inception_score,
    list_images,
)
from ..tasks.imagine import MAX_SAMPLES, MAX_SEED, check_count

if TYPE_CHECKING:
    from PIL import Image

    from ..api import OFA
    from ..metrics.inception import InceptionV3

__all__ = ["ImagegenResult", "record_seed", "run_imagegen_evaluation"]

TASK = "imagine"
# OFA's inception_score.py runs one split; the standard protocol (improved-gan,
# torch-fidelity, torchmetrics) ten
IS_SPLITS = {"imagenet": 1, "tf-fid": 10}
REFERENCE_STATS = "fid_reference_stats.npz"


@dataclass
class ImagegenResult:
    """What :func:`run_imagegen_evaluation` measured and wrote."""

    metrics: dict[str, float]  # "imagine/clip_score", "imagine/fid", "imagine/inception_score"
    predictions: list[dict]  # one per record, in record order
    computed: int  # records drawn by this run (the rest came from an earlier one)
    files: dict[str, Path] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # metrics not computed, and why
    failed: int = 0  # records that could not be drawn (an error in predictions.jsonl)
    discarded: int = 0  # earlier predictions thrown away because resume was off


def record_seed(seed: int, record_id: str) -> int:
    """The sampling seed of one record: a hash of the run's ``seed`` and the record's id, so
    it is the same whatever the order of the records or the batch they run in."""
    digest = hashlib.blake2b(f"{seed}:{record_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % (MAX_SEED + 1)


def _file_name(record_id: str) -> str:
    """A file name for an id: the id itself when it is a plain name, else a readable part
    and a hash (ids may hold "/" or be very long)."""
    if re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}", record_id):
        return record_id
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", record_id)[:60].lstrip(".")
    return f"{readable}-{hashlib.blake2b(record_id.encode(), digest_size=4).hexdigest()}"


def _save_png(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        image.save(tmp, format="PNG")


def _parts(ofa: OFA, vqgan: Any, clip: Any) -> tuple[Any, Any]:
    """The VQGAN and CLIP reranker, loaded once up front: given, attached to ``ofa``, or
    beside its checkpoint. No CLIP is an error: the official score ranks by it."""
    return ofa.attach(vqgan=vqgan, clip=clip).drawing_parts(rank="clip")


def _load_inception(inception: Any, device: torch.device) -> InceptionV3:
    if isinstance(inception, str | os.PathLike):
        from ..metrics.inception import load_inception

        return load_inception(inception, device=device)
    return inception


def _draw(ofa: OFA, record: dict, digest: str, out: Path, vq: Any, reranker: Any, *,
          samples: int, top: int, seed: int, batch_size: int | None) -> dict:
    """Draw one record's images, save them, and return its prediction line."""
    rid = str(record["id"])
    name = _file_name(rid)
    pred: dict[str, Any] = {"id": rid, "task": TASK, "digest": digest,
                            "seed": record_seed(seed, rid)}
    try:
        text = record.get("text")
        if not isinstance(text, str) or not text.strip():
            raise InputError("the record has no caption ('text')")
        r = ofa.imagine(text, vqgan=vq, clip=reranker, rank="clip", samples=samples,
                        top=top, seed=pred["seed"], batch_size=batch_size)
    except OFAError as e:  # this record fails (a caption too long for CLIP), not the run
        return {**pred, "text": record.get("text"), "error": str(e)}
    if r.ranked_by != "clip":
        raise InputError(f"record {rid}: images were ranked by {r.ranked_by}, not CLIP")
    _save_png(r.images[0], out / "top1" / f"{name}.png")
    if top > 1:
        for rank, image in enumerate(r.images):
            _save_png(image, out / "ranked" / f"{name}_{rank}.png")
    return {**pred, "text": r.text, "file": f"top1/{name}.png", "clip": r.scores[0],
            "scores": r.scores, "samples": r.indices}


def run_imagegen_evaluation(
        ofa: OFA, records: Sequence[dict], out_dir: str | os.PathLike[str], *,
        samples: int = 24, top: int = 1, seed: int = 0, vqgan: Any = None, clip: Any = None,
        inception: str | os.PathLike[str] | InceptionV3 | None = None,
        reference_images: str | os.PathLike[str] | Sequence[Any] | None = None,
        reference_stats: str | os.PathLike[str] | FIDStats | None = None,
        is_splits: int | None = None, distinct_captions: bool = True,
        batch_size: int | None = None, inception_batch_size: int = 32, resume: bool = True,
        progress: bool = True, title: str | None = None) -> ImagegenResult:
    """Draw every record's images not yet in ``out_dir`` and score them all.

    ``records``: ``{"id", "text"}`` dicts (:func:`ofa.data.benchmarks.read_eval_data` with task
    ``imagine``). Each caption gets ``samples`` draws (official: 24) ranked by CLIP; the best
    is kept (``top``: how many are saved). ``vqgan`` / ``clip``: paths or loaded models
    (default: attached to ``ofa``, or beside its checkpoint); CLIP is required.
    ``batch_size``: samples decoded together (default: all).

    FID and IS run when ``inception`` (an Inception-v3 weights file, or a loaded
    :class:`~ofa.metrics.inception.InceptionV3`) is given; FID also needs references:
    ``reference_images`` (a folder, searched recursively for .jpg/.png, or a list of images;
    their statistics are saved to ``fid_reference_stats.npz`` for later runs) or
    ``reference_stats`` (an ``.npz`` with ``mu`` and ``sigma``, such as OFA's ``gt_stat.npz``,
    which only matches torchvision's ImageNet Inception). ``is_splits``: default 1 with
    torchvision's Inception (OFA's script), 10 with the FID Inception (the standard).
    ``distinct_captions``: FID / IS use one image per distinct caption, as the official
    folder holds (module docstring).

    Returns an :class:`ImagegenResult`; anything wrong in the inputs raises
    :class:`~ofa.errors.InputError` before any drawing.
    """
    from tqdm import tqdm

    samples = check_count(samples, "samples", 1, MAX_SAMPLES)
    top = check_count(top, "top", 1, samples)
    seed = check_count(seed, "seed", 0, MAX_SEED)
    if batch_size is not None:
        batch_size = check_count(batch_size, "batch_size", 1, MAX_SAMPLES)
    if is_splits is not None:
        is_splits = check_count(is_splits, "is_splits", 1, 1000)
    if reference_images is not None and reference_stats is not None:
        raise InputError("give FID references as images or as statistics, not both")
    if inception is None and (reference_images is not None or reference_stats is not None):
        raise InputError("FID references need the Inception weights too (inception=PATH, "
                         "--inception)")
    out = Path(out_dir)
    refs = [{"id": r.get("id"), "task": r.get("task", TASK), "text": r.get("text")}
            for r in records]
    if not refs:
        raise InputError("no records to evaluate")
    other = sorted({str(r["task"]) for r in refs} - {TASK})
    if other:
        raise InputError(f"text-to-image evaluation takes {TASK} records, not {other}")
    ids = check_ids(refs)
    digests = {rid: input_digest({**r, "task": TASK}) for rid, r in zip(ids, refs, strict=True)}
    stats = (FIDStats.load(reference_stats) if isinstance(reference_stats, str | os.PathLike)
             else reference_stats)
    ref_files = (list_images(reference_images)
                 if isinstance(reference_images, str | os.PathLike) else reference_images)
    net = None if inception is None else _load_inception(inception, ofa.device)
    if net is not None and stats is not None and stats.kind not in (None, net.kind):
        raise InputError(f"the FID reference statistics were made with the {stats.kind} "
                         f"Inception, not the {net.kind} one given")
    vq, reranker = _parts(ofa, vqgan, clip)
    identity = {**run_identity(ofa), "task": TASK, "samples": samples, "top": top,
                "seed": seed, "batch_size": batch_size,
                "vqgan": weights_fingerprint(vq), "clip": weights_fingerprint(reranker.model)}

    out.mkdir(parents=True, exist_ok=True)
    pred_path = out / "predictions.jsonl"
    found = read_predictions(pred_path)
    if resume:
        check_resumable(out, identity, found, digests)
    else:
        pred_path.unlink(missing_ok=True)
        for folder in ("top1", "ranked"):
            shutil.rmtree(out / folder, ignore_errors=True)
    write_atomic(out / RUN_FILE, json.dumps(identity, indent=2) + "\n")
    done = {rid: p for rid, p in found.items()
            if resume and rid in digests and not p.get("error") and p.get("file")
            and (out / p["file"]).is_file()}
    todo = [i for i, rid in enumerate(ids) if rid not in done]
    computed = 0
    for i in tqdm(todo, unit="caption", desc="imagine", disable=not progress,
                  dynamic_ncols=True):
        pred = _draw(ofa, {**records[i], "id": ids[i]}, digests[ids[i]], out, vq, reranker,
                     samples=samples, top=top, seed=seed, batch_size=batch_size)
        append_predictions(pred_path, [pred])
        done[ids[i]] = pred
        computed += 1
    predictions = [done[rid] for rid in ids]
    write_atomic(pred_path, "".join(json.dumps(p) + "\n" for p in predictions))

    ok = [p for p in predictions if not p.get("error")]
    failed = len(predictions) - len(ok)
    notes: dict[str, str] = {}
    if failed:
        notes["failed"] = (f"{failed} of {len(predictions)} captions could not be drawn (see "
                           "'error' in predictions.jsonl) and are left out; run again to retry")
    metrics: dict[str, float] = {}
    if ok:
        metrics[f"{TASK}/clip_score"] = clip_score([p["clip"] for p in ok])
    files = {"predictions": pred_path, "metrics": out / "metrics.json",
             "summary": out / "summary.md", "images": out / "top1"}
    if net is None:
        notes["fid"] = ("FID and IS not computed: pass the Inception weights (inception=PATH, "
                        "--inception)")
    elif ok:
        _image_quality(net, ok, out, metrics, notes, files, stats=stats, ref_images=ref_files,
                       splits=is_splits, distinct=distinct_captions,
                       batch_size=inception_batch_size, progress=progress)
    counts = {"records": len(predictions), "drawn": len(ok), "failed": failed}
    write_atomic(files["metrics"], json.dumps(metrics, indent=2) + "\n")
    write_atomic(files["summary"], _summary(metrics, counts, identity, title, notes))
    return ImagegenResult(metrics, predictions, computed, files, notes, failed,
                          0 if resume else len(found))


def _image_quality(net: InceptionV3, ok: list[dict], out: Path, metrics: dict[str, float],
                   notes: dict[str, str], files: dict[str, Path], *, stats: FIDStats | None,
                   ref_images: Sequence[Any] | None, splits: int | None, distinct: bool,
                   batch_size: int, progress: bool) -> None:
    """IS of the kept images, and FID against the references when there are some."""
    if distinct:  # the official top1 folder: one file per caption (its name)
        first: dict[str, dict] = {}
        for p in ok:
            first.setdefault(str(p.get("text", "")).replace("/", ""), p)
        kept = list(first.values())
    else:
        kept = ok
    pool, logits = inception_features(net, [out / p["file"] for p in kept],
                                      batch_size=batch_size, progress=progress,
                                      desc="inception")
    metrics[f"{TASK}/images_scored"] = float(len(kept))
    n_splits = min(splits or IS_SPLITS[net.kind], len(kept))
    mean, std = inception_score(logits, n_splits)
    metrics[f"{TASK}/inception_score"] = mean
    if std is not None:
        metrics[f"{TASK}/inception_score_std"] = std
    protocol = ("torchvision's ImageNet Inception, OFA's preprocessing (OFA's published "
                "protocol)" if net.kind == "imagenet" else
                "the FID Inception (TF inception-2015-12-05), torch-fidelity's preprocessing")
    notes["inception"] = f"{protocol}; IS over {n_splits} split(s)"
    if stats is None and ref_images is not None:
        real, _ = inception_features(net, ref_images, batch_size=batch_size,
                                     progress=progress, desc="reference")
        if len(real) < 2:
            notes["fid"] = "FID not computed: it needs at least 2 reference images"
            return
        stats = FIDStats.from_features(real, net.kind)
        files["reference_stats"] = stats.save(out / REFERENCE_STATS)
    if stats is None:
        notes["fid"] = ("FID not computed: pass reference images (reference_images=FOLDER, "
                        "--images: the original COCO images) or statistics (reference_stats="
                        "FILE.npz, e.g. OFA's gt_stat.npz)")
        return
    if len(kept) < 2:
        notes["fid"] = "FID not computed: it needs at least 2 generated images"
        return
    metrics[f"{TASK}/fid"] = frechet_distance(pool, stats)
    if stats.kind is None:
        notes["fid_reference"] = ("the reference statistics do not say which Inception made "
                                  "them: FID is only meaningful if it was this one (OFA's "
                                  "gt_stat.npz: torchvision's ImageNet Inception)")
    if stats.count is not None:
        metrics[f"{TASK}/reference_images"] = float(stats.count)


def _summary(metrics: dict[str, float], counts: dict[str, int], identity: dict,
             title: str | None, notes: dict[str, str]) -> str:
    lines = [f"# {title}", ""] if title else []
    lines += [f"Text-to-image: {counts['records']} captions ({counts['drawn']} drawn, "
              f"{counts['failed']} failed), {identity['samples']} samples each ranked by "
              f"CLIP, seed {identity['seed']}.", "",
              "| metric | value |", "|---|---|"]
    shown = {"clip_score": "CLIP score (x100)", "fid": "FID", "inception_score": "IS",
             "inception_score_std": "IS std", "images_scored": "images in FID/IS",
             "reference_images": "FID reference images"}
    for key, label in shown.items():
        v = metrics.get(f"{TASK}/{key}")
        if v is not None:
            lines.append(f"| {label} | {v:.0f} |" if key.endswith("images") or
                         key == "images_scored" else f"| {label} | {v:.2f} |")
    lines += [""] + [f"- {k}: {v}" for k, v in notes.items()]
    return "\n".join(lines) + "\n"
