"""Accuracy on ShapesWorld by annotation kind, for `ofa eval` predictions of one or more models.

    .venv/bin/python benchmarks/shapes_breakdown.py data/shapes/test.jsonl \
        eval/model-a/predictions.jsonl [eval/model-b/predictions.jsonl ...]

Rows are VQA question types, entailment statement kinds per gold label and grounding
expression forms (``ofa.data.shapes.annotation_kind``); one column per predictions file.
Prints a Markdown table. This is the error analysis BENCHMARKS.md quotes for the demo model.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

from ofa.data.shapes import annotation_kind
from ofa.metrics.grounding import box_iou


def read_jsonl(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def correct(record: dict, prediction) -> bool:
    if record["task"] == "vqa":
        return record["answers"].get(prediction, 0.0) > 0
    if record["task"] == "ground":
        return prediction is not None and box_iou(prediction, record["box"]) >= 0.5
    return prediction == record.get("label")


def row_key(record: dict) -> str:
    """"task kind", plus the axis of a relation and the gold answer of yes/no questions and
    statements: "vqa relation vertical (yes)", "entail exist (contradiction)"."""
    kind = annotation_kind(record)
    key = f"{record['task']} {kind}"
    if kind == "relation":
        text = record.get("question") or record["hypothesis"]
        key += " horizontal" if re.search(r" (left|right) of the ", text) else " vertical"
    if record["task"] == "entail":
        return f"{key} ({record['label']})"
    answer = max(record["answers"], key=record["answers"].get) if record["task"] == "vqa" else ""
    return f"{key} ({answer})" if answer in ("yes", "no") else key


def breakdown(records: dict[str, dict], predictions: list[dict]) -> dict[str, tuple[int, int]]:
    """row -> (correct, total) over the VQA, grounding and entailment predictions."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for p in predictions:
        record = records.get(p["id"])
        if record is None or record["task"] not in ("vqa", "ground", "entail"):
            continue
        c = counts[row_key(record)]
        c[0] += correct(record, p["prediction"])
        c[1] += 1
    return {k: (v[0], v[1]) for k, v in counts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="the ShapesWorld JSONL the predictions were made on")
    parser.add_argument("predictions", nargs="+", help="predictions.jsonl written by ofa eval")
    args = parser.parse_args()
    records = {r["id"]: r for r in read_jsonl(args.data)}
    tables = [breakdown(records, read_jsonl(p)) for p in args.predictions]
    rows = sorted(set().union(*tables))
    print("| kind | n | " + " | ".join(Path(p).parent.name for p in args.predictions) + " |")
    print("|---|---|" + "---|" * len(tables))
    for row in rows:
        n = next(t[row][1] for t in tables if row in t)
        cells = [f"{t[row][0] / t[row][1]:.3f}" if row in t else "-" for t in tables]
        print(f"| {row} | {n} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
