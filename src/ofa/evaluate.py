"""Run a model over records (the format of :mod:`ofa.data.records`) and score each task.

Two layers, so training's validation and ``ofa eval`` report the same figures:

- :func:`predict_records` + :func:`score_predictions` (and :func:`evaluate_records`, the two
  together) work in memory;
- :func:`run_evaluation` adds what a long benchmark run needs: predictions appended to
  ``predictions.jsonl`` chunk by chunk (an interrupted run resumes from them), sharding over
  ``torchrun`` processes with a merge on rank 0, ``metrics.json`` and a ``summary.md`` table.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .api import OFA
from .data.records import TASK_NAMES, answers_of, references
from .errors import InputError
from .metrics import (
    CAPTION_METRICS,
    FAST_CAPTION_METRICS,
    accuracy,
    caption_report,
    gigaword_postprocess,
    grounding_accuracy,
    mean_vqa_accuracy,
    rouge_scores,
    vqa_score,
)

# the figure each task is known by (summary tables and keep-best)
PRIMARY_METRIC = {"caption": "cider", "vqa": "acc", "ground": "acc@0.5", "entail": "acc",
                  "classify": "acc", "summarize": "rougeL"}
# ids carried from a record into its prediction (to match predictions with the originals)
_KEPT_IDS = ("question_id", "image_id")


def _group(records: Sequence[dict]) -> dict[str, list[int]]:
    """Record indices per task, in order; unknown tasks are an error."""
    by_task: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        by_task.setdefault(r.get("task"), []).append(i)
    unknown = sorted(str(t) for t in set(by_task) - set(TASK_NAMES))
    if unknown:
        raise InputError(f"unknown tasks in records: {unknown}")
    return by_task


def predict_records(ofa: OFA, records: Sequence[dict], *,
                    vqa_answers: Sequence[str] | None = None, vqa_mode: str = "beam",
                    class_names: Sequence[str] | None = None, batch_size: int = 32,
                    progress: bool = False) -> list[dict]:
    """One prediction dict (``id``, ``task``, ``prediction``) per record, in record order.

    VQA decodes with beam search constrained to ``vqa_answers`` when given (the fine-tuned
    setting), or scores all of them with ``vqa_mode="all"``. Classification ranks
    ``class_names`` (default: every label in ``records``).
    """
    out: list[dict | None] = [None] * len(records)
    opts = {"batch_size": batch_size, "progress": progress}
    for task, idx in _group(records).items():
        recs = [records[i] for i in idx]
        images = [r.get("image") for r in recs]
        if task == "caption":
            preds = [o["caption"] for o in ofa.caption(images, **opts)]
        elif task == "vqa":
            mode = vqa_mode if vqa_answers else "beam"
            outs = ofa.vqa(images, [r["question"] for r in recs], mode=mode,
                           answers=list(vqa_answers) if vqa_answers else None,
                           objects=[r.get("objects") for r in recs]
                           if any(r.get("objects") for r in recs) else None, **opts)
            preds = [o["answer"] for o in outs]
        elif task == "ground":
            preds = [o["box"] for o in ofa.ground(images, [r["text"] for r in recs], **opts)]
        elif task == "entail":
            outs = ofa.entail(images, [r["hypothesis"] for r in recs],
                              premises=[r.get("premise") for r in recs], **opts)
            preds = [o["label"] for o in outs]
        elif task == "classify":
            names = list(class_names) if class_names else sorted({r["label"] for r in recs})
            preds = [o["label"] for o in ofa.classify(images, names, **opts)]
        else:  # summarize
            preds = [o["summary"] for o in ofa.summarize([r["source"] for r in recs], **opts)]
        for i, r, p in zip(idx, recs, preds, strict=True):
            pred = {"id": r.get("id"), "task": task, "prediction": p}
            pred.update({k: r[k] for k in _KEPT_IDS if k in r})
            out[i] = pred
    return out  # type: ignore[return-value]


def _vqa_metrics(recs: list[dict], preds: list[Any]) -> dict[str, float]:
    """Official VQA accuracy where the 10 human answers are known, else the confidence lookup
    of OFA's own answer format; questions without answers (test-dev) are not scored."""
    human = [(p or "", r["human_answers"]) for r, p in zip(recs, preds, strict=True)
             if r.get("human_answers")]
    if human:
        return {"acc": mean_vqa_accuracy([p for p, _ in human], [h for _, h in human])}
    conf = [(p or "", r) for r, p in zip(recs, preds, strict=True)
            if r.get("answers") or r.get("answer")]
    if conf:
        return {"acc": vqa_score([p for p, _ in conf], [answers_of(r) for _, r in conf])}
    return {}


def _score(records: Sequence[dict], predictions: Sequence[dict], full: bool
           ) -> tuple[dict[str, float], dict[str, str]]:
    """Scores, and notes on metrics that were not computed (or computed unofficially)."""
    if len(records) != len(predictions):
        raise InputError(f"{len(predictions)} predictions for {len(records)} records")
    metrics: dict[str, float] = {}
    notes: dict[str, str] = {}
    for task, idx in _group(records).items():
        recs = [records[i] for i in idx]
        preds = [predictions[i]["prediction"] for i in idx]
        if task == "caption":
            report = caption_report([p or "" for p in preds], [references(r) for r in recs],
                                    metrics=CAPTION_METRICS if full else FAST_CAPTION_METRICS)
            scores = report.scores
            notes.update({f"caption/{k}": f"not computed: {v}" for k, v in report.skipped.items()})
            notes.update({f"caption/tokenizer{i}": n for i, n in enumerate(report.notes)})
        elif task == "vqa":
            scores = _vqa_metrics(recs, preds)
        elif task == "ground":
            scores = {"acc@0.5": grounding_accuracy(preds, [r["box"] for r in recs])}
        elif task in ("entail", "classify"):
            scores = {"acc": accuracy(preds, [r["label"] for r in recs])}
        else:  # the official Gigaword post-processing of hypotheses, then ROUGE F1
            scores = rouge_scores([gigaword_postprocess(p or "") for p in preds],
                                  [r["summary"] for r in recs])
        metrics.update({f"{task}/{k}": v for k, v in scores.items()})
    return metrics, notes


def score_predictions(records: Sequence[dict], predictions: Sequence[dict], *,
                      full: bool = False) -> dict[str, float]:
    """``"task/metric"`` scores of ``predictions`` (aligned with ``records``).

    ``full`` computes every caption metric (METEOR, ROUGE-L, SPICE where they can run: slower,
    the benchmark setting); otherwise BLEU and CIDEr only (training's validation).
    """
    return _score(records, predictions, full)[0]


def evaluate_records(ofa: OFA, records: Sequence[dict], *,
                     vqa_answers: Sequence[str] | None = None,
                     class_names: Sequence[str] | None = None, batch_size: int = 32,
                     progress: bool = False, full: bool = False
                     ) -> tuple[dict[str, float], list[dict]]:
    """Metrics and predictions of ``ofa`` on ``records`` (in memory, one process)."""
    preds = predict_records(ofa, records, vqa_answers=vqa_answers, class_names=class_names,
                            batch_size=batch_size, progress=progress)
    return score_predictions(records, preds, full=full), preds


# ---------------------------------------------------------------------- resumable runs
def read_predictions(path: Path) -> dict[str, dict]:
    """Predictions by id from a JSONL file; a torn last line (killed mid-write) is ignored."""
    done: dict[str, dict] = {}
    if not path.is_file():
        return done
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                p = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(p, dict) and "id" in p:
                done[str(p["id"])] = p
    return done


def _append(path: Path, predictions: Iterable[dict]) -> None:
    with path.open("a", encoding="utf-8") as f:
        for p in predictions:
            f.write(json.dumps(p) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def check_ids(records: Iterable[dict]) -> list[str]:
    """Every record's id as a string; resuming needs them unique."""
    ids: list[str] = []
    seen: set[str] = set()
    for r in records:
        if r.get("id") is None:
            raise InputError("every record needs an 'id' to evaluate resumably")
        rid = str(r["id"])
        if rid in seen:
            raise InputError(f"record ids must be unique; {rid!r} appears twice")
        seen.add(rid)
        ids.append(rid)
    return ids


@dataclass
class EvalResult:
    metrics: dict[str, float]
    predictions: list[dict]
    counts: dict[str, int]  # records per task
    computed: int  # predictions made by this run (the rest came from an earlier run)
    files: dict[str, Path] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # metrics not computed, and why


def run_evaluation(ofa: OFA, records: Sequence[dict], out_dir: str | os.PathLike[str], *,
                   vqa_answers: Sequence[str] | None = None, vqa_mode: str = "beam",
                   class_names: Sequence[str] | None = None, batch_size: int = 32,
                   chunk_size: int | None = None, resume: bool = True, rank: int = 0,
                   world_size: int = 1, progress: bool = True, full: bool = True,
                   title: str | None = None) -> EvalResult | None:
    """Predict every record not yet in ``out_dir`` and score them all.

    ``records`` may be a lazy sequence (official TSV files): each record is read when its
    chunk runs, and only its non-image fields are kept for scoring. Process ``rank`` of
    ``world_size`` (from ``torchrun``) takes every ``world_size``-th remaining record and
    appends to ``predictions.rank{rank}.jsonl``; rank 0 then gathers all predictions
    (``torch.distributed``), writes the merged ``predictions.jsonl``, ``metrics.json`` and
    ``summary.md`` (plus ``vqa_submission.json`` for VQAv2 questions) and returns the result;
    other ranks return None. One process writes ``predictions.jsonl`` directly.
    """
    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # one pass over the records: what scoring needs, without the (possibly large) images
    refs = [{k: v for k, v in r.items() if k != "image"} for r in records]
    ids = check_ids(refs)
    merged_path = out / "predictions.jsonl"
    stale = [merged_path, *sorted(out.glob("predictions.rank*.jsonl"))]
    done: dict[str, dict] = {}
    if resume:
        for path in stale:
            done.update(read_predictions(path))
    else:
        _barrier(world_size)  # every rank has listed the files before rank 0 removes them
        if rank == 0:
            for path in stale:
                path.unlink(missing_ok=True)
        _barrier(world_size)
    known = set(ids)
    done = {k: v for k, v in done.items() if k in known}
    todo = [i for i, rid in enumerate(ids) if rid not in done][rank::world_size]
    own_path = merged_path if world_size == 1 else out / f"predictions.rank{rank}.jsonl"
    chunk = chunk_size or max(8 * batch_size, 64)
    mine: list[dict] = []
    bar = tqdm(total=len(todo), unit="rec", desc=f"eval[{rank}]" if world_size > 1 else "eval",
               disable=not progress, dynamic_ncols=True)
    for start in range(0, len(todo), chunk):
        part = [records[i] for i in todo[start:start + chunk]]
        preds = predict_records(ofa, part, vqa_answers=vqa_answers, vqa_mode=vqa_mode,
                                class_names=class_names, batch_size=batch_size)
        _append(own_path, preds)
        mine.extend(preds)
        bar.update(len(part))
    bar.close()
    if world_size > 1:
        mine = _gather(mine, rank, world_size)
        if rank != 0:
            return None
    for p in mine:
        done[str(p["id"])] = p
    predictions = [done[rid] for rid in ids]
    _write_atomic(merged_path, "".join(json.dumps(p) + "\n" for p in predictions))
    for path in out.glob("predictions.rank*.jsonl"):
        path.unlink()
    metrics, notes = _score(refs, predictions, full)
    counts: dict[str, int] = {}
    for r in refs:
        counts[r["task"]] = counts.get(r["task"], 0) + 1
    files = {"predictions": merged_path, "metrics": out / "metrics.json",
             "summary": out / "summary.md"}
    _write_atomic(files["metrics"], json.dumps(metrics, indent=2) + "\n")
    _write_atomic(files["summary"], summary_table(metrics, counts, title, notes))
    vqa = [r for r in refs if r["task"] == "vqa"]
    if vqa and all("question_id" in r for r in vqa):
        from .data.vqav2 import write_vqa_submission

        files["vqa_submission"] = write_vqa_submission(out / "vqa_submission.json", vqa,
                                                       predictions)
    return EvalResult(metrics, predictions, counts, len(mine), files, notes)


def summary_table(metrics: dict[str, float], counts: dict[str, int],
                  title: str | None = None, notes: dict[str, str] | None = None) -> str:
    """A short markdown table: one row per task and metric, the primary metric first."""
    lines = [f"# {title}", ""] if title else []
    lines += ["| task | records | metric | value |", "|---|---|---|---|"]
    for task, n in counts.items():
        keys = [k for k in metrics if k.startswith(task + "/")]
        keys.sort(key=lambda k: (k != f"{task}/{PRIMARY_METRIC[task]}", k))
        if not keys:
            lines.append(f"| {task} | {n} | (no references) | |")
        for k in keys:
            v = metrics[k]
            shown = f"{100 * v:.2f}" if not math.isnan(v) else "n/a"
            lines.append(f"| {task} | {n} | {k.split('/', 1)[1]} | {shown} |")
    lines += ["", "Values are percentages (CIDEr x 100, as published)."]
    lines += [f"- {k}: {v}" for k, v in (notes or {}).items()]
    return "\n".join(lines) + "\n"


def _barrier(world_size: int) -> None:
    if world_size > 1:
        import torch.distributed as dist

        dist.barrier()


def _gather(predictions: list[dict], rank: int, world_size: int) -> list[dict]:
    """Every rank's predictions on rank 0 (others get an empty list)."""
    import torch.distributed as dist

    parts: list[Any] | None = [None] * world_size if rank == 0 else None
    dist.gather_object(predictions, parts, dst=0)
    if rank != 0:
        return []
    return [p for part in parts or [] for p in part]
