"""Run a model over records (the format of :mod:`ofa.data.records`) and score each task.

Two layers, so training's validation and ``ofa eval`` report the same figures:

- :func:`predict_records` + :func:`score_predictions` (and :func:`evaluate_records`, the two
  together) work in memory;
- :func:`run_evaluation` adds what a long benchmark run needs: predictions appended to
  ``predictions.jsonl`` chunk by chunk (an interrupted run resumes from them), sharding over
  ``torchrun`` processes with a merge on rank 0, ``metrics.json`` and a ``summary.md`` table.

Resuming only reuses predictions made the same way: ``run.json`` records the model (a
fingerprint of its weights), dtype and prediction settings, and each prediction carries a
``digest`` of its record's inputs; anything different is refused rather than mixed in.
A record whose input cannot be read (a corrupt image) gets an ``error`` instead of a
prediction, is counted as wrong, and is tried again by the next run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .api import OFA
from .data.records import TASK_NAMES
from .errors import InputError
from .files import write_atomic
from .tasks import TASKS

# ids carried from a record into its prediction (to match predictions with the originals)
_KEPT_IDS = ("question_id", "image_id")
# the record fields a prediction depends on (besides the task and the image); references
# (captions, answers, labels, boxes) are not among them, so fixing one keeps predictions
_INPUT_FIELDS = tuple(dict.fromkeys(f.record_name for task in TASKS.values() if task.record_fields
                                    for f in task.input_fields if f.record_name))
RUN_FILE = "run.json"


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
    """One prediction dict (``id``, ``task``, ``prediction``, the record's input ``digest``)
    per record, in record order. A record whose input cannot be read (a corrupt image, text
    that is not UTF-8) gets ``prediction`` None and an ``error`` message instead of failing
    the others.

    VQA decodes with beam search constrained to ``vqa_answers`` when given (the fine-tuned
    setting), or scores all of them with ``vqa_mode="all"``. Classification ranks
    ``class_names`` (default: every label in ``records``).
    """
    given = _task_options(vqa_answers, vqa_mode, class_names)
    out: list[dict | None] = [None] * len(records)
    # a bad input (a corrupt image) fails its own record, not the run
    opts = {"batch_size": batch_size, "progress": progress, "errors": "return"}
    for task, idx, options in _calls(records):
        recs = [records[i] for i in idx]
        spec = TASKS[task]
        images = None if spec.image == "none" else [r.get("image") for r in recs]
        outs = ofa.run(task, images, **spec.inputs_from_records(recs),
                       **spec.eval_options(recs, given.get(task, {})), **options, **opts)
        for i, r, o in zip(idx, recs, outs, strict=True):
            # as JSON carries it (drawn images: base64 PNG)
            pred = {"id": r.get("id"), "task": task,
                    "prediction": spec.to_json(o).get(spec.result_key)}
            if "error" in o:
                pred["error"] = o["error"]
            pred.update({k: r[k] for k in _KEPT_IDS if k in r})
            pred["digest"] = input_digest(r)
            out[i] = pred
    return out  # type: ignore[return-value]


def _calls(records: Sequence[dict]) -> list[tuple[str, list[int], dict[str, Any]]]:
    """``(task, record indices, options)`` per model call: the records of a task, split by
    the options they set themselves (a GLUE record's dataset)."""
    calls = []
    for task, idx in _group(records).items():
        by_options: dict[str, tuple[list[int], dict[str, Any]]] = {}
        for i in idx:
            options = TASKS[task].record_options(records[i])
            key = json.dumps(options, sort_keys=True, default=str)
            by_options.setdefault(key, ([], options))[0].append(i)
        calls += [(task, sub, options) for sub, options in by_options.values()]
    return calls


def _task_options(vqa_answers: Sequence[str] | None, vqa_mode: str,
                  class_names: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """The evaluation's settings as options of the tasks they belong to."""
    return {"vqa": {"answers": vqa_answers, "mode": vqa_mode},
            "classify": {"classes": class_names}}


def input_digest(record: dict) -> str:
    """A short digest of what a prediction depends on in ``record``: its task, text inputs
    and image. An image path counts by its last two parts (folder and name), so a moved
    image folder still matches; embedded image bytes count by their content."""
    image = record.get("image")
    if isinstance(image, bytes | bytearray):
        image_key: str | None = hashlib.blake2b(image, digest_size=16).hexdigest()
    elif isinstance(image, str | os.PathLike):
        image_key = "/".join(Path(image).parts[-2:])
    else:  # an in-memory image from Python code: only its kind is known cheaply
        image_key = None if image is None else type(image).__name__
    inputs = {"task": record.get("task"), "image": image_key,
              **{k: record[k] for k in _INPUT_FIELDS if k in record}}
    name = record.get("task")
    task = TASKS.get(name) if isinstance(name, str) else None
    options = task.record_options(record) if task is not None and task.record_fields else {}
    if options:  # only where a record sets options: other digests stay as they were
        inputs["options"] = options
    text = json.dumps(inputs, sort_keys=True, default=str)  # ASCII: surrogates escaped
    return hashlib.blake2b(text.encode("ascii"), digest_size=8).hexdigest()


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
        scores, task_notes = TASKS[task].score(recs, preds, full)
        notes.update({f"{task}/{k}": v for k, v in task_notes.items()})
        metrics.update({f"{task}/{k}": v for k, v in scores.items()})
        failed = sum(1 for i in idx if predictions[i].get("error"))
        if failed:
            notes[f"{task}/failed"] = (f"{failed} of {len(idx)} records failed (see 'error' "
                                       "in predictions.jsonl) and are counted as wrong")
    return metrics, notes


def score_predictions(records: Sequence[dict], predictions: Sequence[dict], *,
                      full: bool = False) -> dict[str, float]:
    """``"task/metric"`` scores of ``predictions`` (aligned with ``records``).

    ``full`` computes every caption metric (METEOR, ROUGE-L, SPICE where they can run: slower,
    the benchmark setting); otherwise BLEU and CIDEr only (training's validation). A
    prediction with an ``error`` (its input could not be read) counts as wrong.
    """
    return _score(records, predictions, full)[0]


def evaluate_records(ofa: OFA, records: Sequence[dict], *,
                     vqa_answers: Sequence[str] | None = None, vqa_mode: str = "beam",
                     class_names: Sequence[str] | None = None, batch_size: int = 32,
                     progress: bool = False, full: bool = False
                     ) -> tuple[dict[str, float], list[dict]]:
    """Metrics and predictions of ``ofa`` on ``records`` (in memory, one process)."""
    preds = predict_records(ofa, records, vqa_answers=vqa_answers, vqa_mode=vqa_mode,
                            class_names=class_names, batch_size=batch_size, progress=progress)
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


def append_predictions(path: Path, predictions: Iterable[dict]) -> None:
    with path.open("a", encoding="utf-8") as f:
        for p in predictions:
            f.write(json.dumps(p) + "\n")
        f.flush()
        os.fsync(f.fileno())


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
    failed: int = 0  # records whose input could not be read (counted as wrong)
    discarded: int = 0  # earlier predictions thrown away because resume was off


def _state_tensors(state: dict) -> list[tuple[str, Any]]:
    """The tensors of a state dict; an int8 layer's entries hold a tuple of its packed weight
    and bias and a dtype, which are unpacked or named."""
    import torch

    out = []
    for name, value in state.items():
        if isinstance(value, torch.Tensor):
            out.append((name, value))
        elif isinstance(value, tuple | list):
            out += [(f"{name}.{i}", v) for i, v in enumerate(value)
                    if isinstance(v, torch.Tensor)]
        else:
            out.append((f"{name}={value}", torch.empty(0)))
    return out


def weights_fingerprint(model: Any) -> str:
    """A digest of every weight's name, shape and dtype and of 64 values spread over it:
    the same for the same weights on any device, different after training or for another
    checkpoint, and milliseconds to compute even for the largest model."""
    import torch

    h = hashlib.blake2b(digest_size=8)
    samples = []
    for name, t in _state_tensors(model.state_dict()):
        h.update(f"{name}{tuple(t.shape)}{t.dtype};".encode())
        if t.is_quantized:  # int8 layers: their integer weights
            t = t.int_repr()
        flat = t.detach().reshape(-1)
        if flat.numel():
            samples.append(flat[::max(1, flat.numel() // 64)][:64].float())
    if samples:
        h.update(torch.cat(samples).cpu().numpy().tobytes())
    return h.hexdigest()


def _list_digest(items: Sequence[str] | None) -> str | None:
    if not items:
        return None
    return hashlib.blake2b(json.dumps(list(items)).encode(), digest_size=8).hexdigest()


def run_identity(ofa: OFA, *, vqa_answers: Sequence[str] | None = None,
                 vqa_mode: str = "beam", class_names: Sequence[str] | None = None) -> dict:
    """What, besides each record's inputs, decides the predictions of a run: the model (its
    weights' fingerprint, dtype, fine-tuning task and input resolution) and the settings."""
    model = getattr(ofa, "model", None)
    dtype = getattr(ofa, "dtype", None)
    return {"model": getattr(ofa, "name", None),
            "weights": weights_fingerprint(model) if model is not None else None,
            "dtype": None if dtype is None else str(dtype).removeprefix("torch."),
            "model_task": getattr(ofa, "task", None),
            "image_size": getattr(ofa, "image_size", None),
            "vqa_mode": vqa_mode if vqa_answers else "beam",
            "vqa_answers": _list_digest(vqa_answers),
            "class_names": _list_digest(class_names)}


def _identity_changes(old: dict, new: dict) -> list[str]:
    """How ``new`` differs from ``old``, for the user; the model's name only matters when
    there are no weights to compare (the same weights under another name predict the same)."""
    by_weights = bool(old.get("weights") and new.get("weights"))
    changes = []
    for key in new:
        if old.get(key) == new[key] or (key == "model" and by_weights):
            continue
        if key == "weights":
            changes.append(f"model {old.get('model')} [weights {old.get(key)}] -> "
                           f"{new.get('model')} [weights {new[key]}]")
        else:
            changes.append(f"{key} {old.get(key)} -> {new[key]}")
    return changes


def _refuse_resume(out: Path, why: str) -> InputError:
    return InputError(f"cannot resume in {out}: {why}; pass --no-resume (resume=False) to "
                      "discard its predictions and start again, or choose another --out")


def check_resumable(out: Path, identity: dict, found: dict[str, dict],
                     digests: dict[str, str]) -> None:
    """Refuse to resume from predictions another model, other settings or other records
    made: reusing them would report their figures under this run's name."""
    if not found:
        return
    path = out / RUN_FILE
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _refuse_resume(out, f"it holds {len(found)} predictions but no {RUN_FILE} "
                                  "saying which model and settings made them") from None
    except (OSError, ValueError) as e:
        raise _refuse_resume(out, f"{RUN_FILE} is unreadable ({e})") from None
    changes = _identity_changes(old if isinstance(old, dict) else {}, identity)
    if changes:
        raise _refuse_resume(out, "its predictions were made with " + "; ".join(changes))
    other = [rid for rid, p in found.items()
             if rid in digests and p.get("digest") != digests[rid]]
    if other:
        raise _refuse_resume(out, f"{len(other)} of its predictions were made for other "
                                  f"inputs under the same ids (first: {other[0]})")


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

    Resuming reuses a prediction only if ``run.json`` shows the same model and settings
    (:func:`run_identity`) and the record's inputs are unchanged (:func:`input_digest`); a
    difference raises :class:`~ofa.errors.InputError` (``resume=False`` starts afresh).
    Predictions that failed (``error``) are tried again.
    """
    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # one pass over the records: what scoring needs, without the (possibly large) images
    refs, digest_list = [], []
    for r in records:
        refs.append({k: v for k, v in r.items() if k != "image"})
        digest_list.append(input_digest(r))
    ids = check_ids(refs)
    digests = dict(zip(ids, digest_list, strict=True))
    if any(r["task"] == "classify" for r in refs):
        # every chunk must rank the same candidates, and run.json must name them
        class_names = TASKS["classify"].eval_options(
            [r for r in refs if r["task"] == "classify"], {"classes": class_names})["classes"]
    identity = run_identity(ofa, vqa_answers=vqa_answers, vqa_mode=vqa_mode,
                            class_names=class_names)
    merged_path = out / "predictions.jsonl"
    stale = [merged_path, *sorted(out.glob("predictions.rank*.jsonl"))]
    found: dict[str, dict] = {}
    for path in stale:
        found.update(read_predictions(path))
    if resume:
        check_resumable(out, identity, found, digests)
    _barrier(world_size)  # every rank has read the files before rank 0 changes them
    if rank == 0:
        if not resume:
            for path in stale:
                path.unlink(missing_ok=True)
        write_atomic(out / RUN_FILE, json.dumps(identity, indent=2) + "\n")
    _barrier(world_size)
    done = {rid: p for rid, p in found.items()
            if resume and rid in digests and not p.get("error")}
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
        append_predictions(own_path, preds)
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
    write_atomic(merged_path, "".join(json.dumps(p) + "\n" for p in predictions))
    for path in out.glob("predictions.rank*.jsonl"):
        path.unlink()
    metrics, notes = _score(refs, predictions, full)
    counts: dict[str, int] = {}
    for r in refs:
        counts[r["task"]] = counts.get(r["task"], 0) + 1
    files = {"predictions": merged_path, "metrics": out / "metrics.json",
             "summary": out / "summary.md"}
    _write_vqa_submission(out, refs, predictions, files, notes)
    write_atomic(files["metrics"], json.dumps(metrics, indent=2) + "\n")
    write_atomic(files["summary"], summary_table(metrics, counts, title, notes))
    failed = sum(1 for p in predictions if p.get("error"))
    discarded = 0 if resume else len(found)
    return EvalResult(metrics, predictions, counts, len(mine), files, notes, failed, discarded)


def _write_vqa_submission(out: Path, refs: list[dict], predictions: list[dict],
                          files: dict[str, Path], notes: dict[str, str]) -> None:
    """``vqa_submission.json`` for VQAv2 questions, unless some failed: the evaluation server
    refuses a file with a question missing (an older file is removed, not left stale)."""
    vqa = [(r, p) for r, p in zip(refs, predictions, strict=True) if r["task"] == "vqa"]
    if not vqa or not all("question_id" in r for r, _ in vqa):
        return
    path = out / "vqa_submission.json"
    failed = sum(1 for _, p in vqa if p.get("error"))
    if failed:
        path.unlink(missing_ok=True)
        notes["vqa/submission"] = (f"vqa_submission.json not written: {failed} of {len(vqa)} "
                                   "questions failed; run again to retry them")
        return
    from .data.benchmarks.vqav2 import write_vqa_submission

    files["vqa_submission"] = write_vqa_submission(path, [r for r, _ in vqa],
                                                   [p for _, p in vqa])


def summary_table(metrics: dict[str, float], counts: dict[str, int],
                  title: str | None = None, notes: dict[str, str] | None = None) -> str:
    """A short markdown table: one row per task and metric, the primary metric first."""
    lines = [f"# {title}", ""] if title else []
    lines += ["| task | records | metric | value |", "|---|---|---|---|"]
    for task, n in counts.items():
        keys = [k for k in metrics if k.startswith(task + "/")]
        keys.sort(key=lambda k: (k != f"{task}/{TASKS[task].primary_metric}", k))
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
