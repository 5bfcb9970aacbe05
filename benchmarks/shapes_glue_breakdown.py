"""Accuracy on ShapesWorld's GLUE-format task by kind, for `ofa eval glue` predictions.

    .venv/bin/python benchmarks/shapes_glue_breakdown.py data/shapes-glue/RTE/test.tsv \
        eval/shapes-glue-rte/predictions.jsonl

RTE rows by statement kind (exist, count, size, relation), then by the number of shapes the
premise names (``/n3``), and label; MRPC rows by the number of shapes each text names (``n2``;
``diff`` when they name different numbers) and label.
Prints a Markdown table. This is the error analysis BENCHMARKS.md quotes ("GLUE").
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

from ofa.data.glue import read_glue_tsv
from ofa.data.shapes_glue import statement_kind


def shapes(text: str) -> int:
    """How many shapes a caption or rewording names ("a, b and c")."""
    return text.count(" and ") + text.count(",") + 1


def kinds(record: dict) -> list[str]:
    """The groups a record counts in: its kind, and for RTE its kind by scene size too."""
    if record["dataset"] == "rte":
        kind = statement_kind(record["text2"])
        return [kind, f"{kind}/n{shapes(record['text'])}"]
    n1, n2 = shapes(record["text"]), shapes(record["text2"])
    return [f"n{n1}" if n1 == n2 else "diff"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", help="a ShapesWorld GLUE TSV (RTE/ or MRPC/)")
    ap.add_argument("predictions", help="predictions.jsonl of `ofa eval glue` on it")
    args = ap.parse_args()
    records = {r["id"]: r for r in read_glue_tsv(args.data)}
    hits: dict[tuple[str, str], list[bool]] = defaultdict(list)
    with open(args.predictions, encoding="utf-8") as f:
        for line in f:
            p = json.loads(line)
            r = records[str(p["id"])]
            for k in kinds(r):
                hits[(k, r["label"])].append(p["prediction"] == r["label"])
    print("| kind | label | records | accuracy |\n|---|---|---|---|")
    for (k, label), v in sorted(hits.items()):
        print(f"| {k} | {label} | {len(v)} | {sum(v) / len(v):.3f} |")


if __name__ == "__main__":
    main()
