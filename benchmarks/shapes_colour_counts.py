"""Does a ShapesWorld model read the colour word of "how many C shapes are there?"

    .venv/bin/python benchmarks/shapes_colour_counts.py runs/X/best [--data data/shapes]

Asks the question for every one of the 6 colours on the first N val scenes (the generator's
own per-colour count questions, checked against the written data's captions) and prints how
many scenes got one answer for all six colours (a model that ignores the colour word), plus
accuracy per gold answer. This is the per-colour count probe BENCHMARKS.md quotes for the
demo models.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import ofa
from ofa.data.shapes import COLORS, NUMBER_WORDS, ShapesWorld


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="model folder or registry name (e.g. shapes-demo)")
    parser.add_argument("--data", type=Path, default=Path("data/shapes"),
                        help="folder written by `ofa data shapes` (default data/shapes)")
    parser.add_argument("--scenes", type=int, default=60, help="val scenes (default 60)")
    parser.add_argument("--seed", type=int, default=0, help="world seed the data used")
    args = parser.parse_args()
    model = ofa.load(args.model, device="cpu")
    world = ShapesWorld(seed=args.seed)
    with open(args.data / "val.jsonl", encoding="utf-8") as f:
        captions = {r["image"]: r["caption"] for r in map(json.loads, f) if r["task"] == "caption"}
    images, questions, gold = [], [], []
    for index in range(args.scenes):
        scene, image = world.scene("val", index), f"images/val/{index:06d}.png"
        if captions.get(image) != scene.caption():
            parser.error(f"{args.data} was not written with world seed {args.seed} and the "
                             "default settings (its captions differ); pass --seed")
        # present colours and absent ones ("zero"): one question per colour
        _total, present, absent = scene._question_pools()["count"]
        for question, answer in present + absent:
            images.append(str(args.data / image))
            questions.append(question)
            gold.append(answer)
    answers_file = (args.data / "answers.txt").read_text().splitlines()
    answers = [r["answer"] for r in model.vqa(images, questions, answers=answers_file,
                                              progress=True)]
    per_scene = [answers[i:i + len(COLORS)] for i in range(0, len(answers), len(COLORS))]
    ignoring = sum(len(set(a)) == 1 for a in per_scene)
    print(f"scenes with one answer for all {len(COLORS)} colours: {ignoring} / {args.scenes}")
    right, total = Counter(), Counter()
    for answer, want in zip(answers, gold, strict=True):
        total[want] += 1
        right[want] += answer == want
    for want in NUMBER_WORDS:
        if total[want]:
            print(f"gold {want}: {right[want]} / {total[want]}")


if __name__ == "__main__":
    main()
