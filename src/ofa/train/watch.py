"""Watching a run: its scalars in TensorBoard, and its curves as a PNG (``ofa plot``).

The trainer always writes ``train_log.jsonl`` (one line per update) and ``valid_log.jsonl``
(one per validation). With ``tensorboard: true`` in the config it also writes the same scalars
to ``OUTPUT_DIR/tensorboard`` through ``torch.utils.tensorboard`` (the ``watch`` extra), with a
few sample predictions per validation: the texts it produced beside the references, grounding
boxes drawn on their images (prediction red, reference green) and the images it drew.
:func:`plot_run` renders the two logs with matplotlib for a user without TensorBoard.
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from ..errors import InputError
from .run_folder import TRAIN_LOG, VALID_LOG

__all__ = ["TRAIN_SCALARS", "TensorBoardLog", "plot_run", "read_log", "sample_predictions"]

# per-update scalars of train_log.jsonl shown as curves (ntokens and ppl say nothing more;
# reward: the mean CIDEr-D of the captions an SCST update sampled)
TRAIN_SCALARS: tuple[str, ...] = ("loss", "nll", "acc", "reward", "lr", "gnorm")
# valid_log.jsonl keys that are bookkeeping, not metrics
_NOT_METRICS = frozenset({"step", "score", "best"})
_EXTRA_HINT = "pip install 'ofa-vl[watch]'"


class TensorBoardLog:
    """Scalars and validation samples of one run, written to ``folder`` as TensorBoard events.

    ``start_step``: the updates already done (a resumed run's checkpoint, 0 for a new run);
    events an earlier run in the folder wrote for later updates are purged
    (``SummaryWriter(purge_step=...)``), so a resumed or restarted run shows one curve, as
    its JSONL logs do. ``samples``: predictions shown per task and
    validation.
    """

    def __init__(self, folder: str | Path, start_step: int = 0, samples: int = 4) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch's module imports the tensorboard package
            raise InputError(f"tensorboard: true needs the tensorboard package: "
                             f"{_EXTRA_HINT}") from None
        self.samples = samples
        self.writer = SummaryWriter(str(folder), purge_step=start_step + 1)

    def train(self, record: dict[str, Any]) -> None:
        """One line of train_log.jsonl."""
        for key in TRAIN_SCALARS:
            if key in record:
                self.writer.add_scalar(f"train/{key}", record[key], record["step"])

    def valid(self, step: int, metrics: dict[str, float], records: Sequence[dict] = (),
              predictions: Sequence[dict] = ()) -> None:
        """One validation: its metrics, and sample predictions when given."""
        for key, value in metrics.items():
            self.writer.add_scalar(f"valid/{key}", value, step)
        if self.samples and predictions:
            texts, images = sample_predictions(records, predictions, self.samples)
            for tag, text in texts.items():
                self.writer.add_text(tag, text, step)
            for tag, image in images.items():
                self.writer.add_image(tag, image, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


# ---------------------------------------------------------------------------- samples
def _reference(task: str, record: dict) -> Any:
    if task == "vqa" and isinstance(record.get("answers"), dict) and record["answers"]:
        answers = record["answers"]
        return max(answers, key=answers.__getitem__)  # the most confident answer
    from ..tasks import TASKS

    return record.get(TASKS[task].result_key) if task in TASKS else None


def _question(task: str, record: dict) -> str:
    key = {"vqa": "question", "entail": "hypothesis", "ground": "text", "imagine": "text",
           "summarize": "source", "generate": "prompt"}.get(task)
    return "" if key is None else str(record.get(key, ""))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = json.dumps(value) if isinstance(value, list | dict) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")[:200]


def _boxed(path: Any, predicted: Any, reference: Any) -> np.ndarray | None:
    """The record's image with the predicted (red) and reference (green) boxes, uint8 HWC."""
    if not isinstance(path, str):
        return None
    try:
        with Image.open(path) as im:
            image = im.convert("RGB")
    except OSError:
        return None
    draw = ImageDraw.Draw(image)
    for box, colour in ((reference, (0, 200, 0)), (predicted, (255, 0, 0))):
        if isinstance(box, list | tuple) and len(box) == 4:
            draw.rectangle([float(v) for v in box], outline=colour, width=max(1, image.width // 64))
    return np.asarray(image)


def _decoded(png: Any) -> np.ndarray | None:
    if not isinstance(png, str):
        return None
    try:
        with Image.open(io.BytesIO(base64.b64decode(png))) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError):
        return None


def sample_predictions(records: Sequence[dict], predictions: Sequence[dict], per_task: int
                       ) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """The first ``per_task`` predictions of each task (in record order) as TensorBoard text
    (a markdown table per task: id, input, prediction, reference) and images (grounding boxes
    on their images, drawn images), keyed by tag."""
    by_id = {str(r.get("id")): r for r in records}
    texts: dict[str, list[str]] = {}
    images: dict[str, np.ndarray] = {}
    for pred in predictions:
        task = str(pred.get("task"))
        rows = texts.setdefault(task, [])
        if len(rows) >= per_task:
            continue
        record = by_id.get(str(pred.get("id")), {})
        predicted, reference = pred.get("prediction"), _reference(task, record)
        shown = predicted
        if task == "imagine" and isinstance(predicted, list):
            shown = f"{len(predicted)} image{'' if len(predicted) == 1 else 's'}"
        rows.append(f"| {_cell(pred.get('id'))} | {_cell(_question(task, record))} | "
                    f"{_cell(shown)} | {_cell(reference)} |")
        tag = f"samples/{task}/{len(rows) - 1}"
        if task == "ground":
            image = _boxed(record.get("image"), predicted, reference)
        elif task == "imagine" and isinstance(predicted, list) and predicted:
            image = _decoded(predicted[0])
        else:
            image = None
        if image is not None:
            images[tag] = image
    header = "| id | input | prediction | reference |\n|---|---|---|---|\n"
    return ({f"samples/{task}": header + "\n".join(rows) for task, rows in texts.items()},
            images)


# ---------------------------------------------------------------------------- curves
def read_log(path: str | Path) -> list[dict[str, Any]]:
    """The lines of a JSONL log; a torn last line (a killed run) is skipped."""
    out = []
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(item, dict) and isinstance(item.get("step"), int):
                out.append(item)
    return out


def _moving_average(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < 2:
        return values
    window = min(window, len(values))
    kernel = np.ones(window) / window
    smoothed = np.convolve(values, kernel, mode="valid")
    return np.concatenate([np.full(window - 1, np.nan), smoothed])


def plot_run(run_dir: str | Path, out: str | Path | None = None, smooth: int = 50,
             dpi: int = 110) -> Path:
    """Render a run's curves to a PNG (default ``RUN_DIR/curves.png``) and return its path:
    one panel per train scalar (the per-update values, faint, and their ``smooth``-update
    moving average) and one per validation metric (``valid_log.jsonl``, when there is one)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise InputError(f"ofa plot needs matplotlib: {_EXTRA_HINT}") from None
    run = Path(run_dir)
    train_path, valid_path = run / TRAIN_LOG, run / VALID_LOG
    if not train_path.is_file():
        raise InputError(f"{run} has no {TRAIN_LOG}: not a training run folder")
    train = read_log(train_path)
    if not train:
        raise InputError(f"{train_path} holds no update yet")
    valid = read_log(valid_path) if valid_path.is_file() else []
    if isinstance(smooth, bool) or not isinstance(smooth, int) or smooth < 1:
        raise InputError(f"smooth must be a positive integer, got {smooth!r}")
    panels: list[tuple[str, list[tuple[np.ndarray, np.ndarray, str]]]] = []
    steps = np.array([r["step"] for r in train], dtype=float)
    for key in TRAIN_SCALARS:
        values = np.array([r.get(key, np.nan) for r in train], dtype=float)
        if np.isnan(values).all():
            continue
        lines = [(steps, values, "raw")]
        if key not in ("lr",) and len(values) > smooth:
            lines.append((steps, _moving_average(values, smooth), f"mean of {smooth}"))
        panels.append((f"train {key}", lines))
    metrics = sorted({k for r in valid for k, v in r.items()
                      if k not in _NOT_METRICS and isinstance(v, int | float)})
    for key in metrics:
        points = [(r["step"], r[key]) for r in valid if isinstance(r.get(key), int | float)]
        x, y = (np.array(v, dtype=float) for v in zip(*points, strict=True))
        panels.append((f"valid {key}", [(x, y, "valid")]))
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(4.2 * columns, 3.0 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    for i, (title, lines) in enumerate(panels):
        ax = figure.add_subplot(rows, columns, i + 1)
        for x, y, label in lines:
            if label == "raw" and len(lines) > 1:
                ax.plot(x, y, lw=0.6, alpha=0.35, color="tab:blue")
            elif label == "valid":
                ax.plot(x, y, marker="o", ms=3, lw=1.2, color="tab:orange")
            else:
                ax.plot(x, y, lw=1.2, color="tab:blue", label=label)
        if title in ("train loss", "train nll", "train gnorm") and np.nanmin(lines[0][1]) > 0:
            ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("update", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    figure.suptitle(run.resolve().name, fontsize=11)
    target = Path(out) if out is not None else run / "curves.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=dpi)
    return target
