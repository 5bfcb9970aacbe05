"""Held-out checks of every ShapesWorld pretraining task, and chance levels of the zero-shot tasks.

    .venv/bin/python benchmarks/shapes_pretrain.py --model runs/shapes-pretrain/final \
        [--data data/shapes/pretrain] [--split val] [--json F]
    .venv/bin/python benchmarks/shapes_pretrain.py --chance [--records data/shapes/test.jsonl]
        [--limit N]

Per pretraining head, on the ``{kind}_{split}.tsv`` files of ``ofa data shapes --pretrain``
(scenes of the val split, never trained on), with the samples the trainer builds
(:mod:`ofa.train.pretrain`, the same seeded choices on every run):

* ITM accuracy: the caption and QA matching questions (true or negative, about half each),
  right when the logit of " yes" beats that of " no" as the truth says;
* text infilling: teacher-forced token accuracy (argmax over the vocabulary) of the
  description behind the masked spans;
* image infilling: teacher-forced code accuracy (argmax over the VQGAN's 512 codes) of the
  centre's 16 codes;
* detection: recall at IoU 0.5: the share of shapes whose box and "colour kind" name the
  generated object list holds (beam 5, each predicted object matched once).

``--chance`` scores what guessing gets on the zero-shot tasks' records: VQA always answering
the commonest answer, grounding the box of a random shape of the scene, captioning another
scene's caption (CIDEr-D and BLEU-4 as ``ofa eval`` computes them).
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import torch

BIN = re.compile(r"<bin_(\d+)>")


def _iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def parse_objects(text: str, width: int, height: int, num_bins: int = 1000) -> list[tuple]:
    """``(name, box)`` of each "<bin> x4 name" group of a generated detection."""
    objects, pieces = [], re.split(r"((?:<bin_\d+>\s*){4})", text)
    for i in range(1, len(pieces) - 1, 2):
        b = [int(v) / (num_bins - 1) for v in BIN.findall(pieces[i])]
        box = (b[0] * width, b[1] * height, b[2] * width, b[3] * height)
        objects.append((pieces[i + 1].strip(), box))
    return objects


def recall(predicted: list[tuple], truth: list[dict]) -> int:
    """Shapes found: the same name and IoU >= 0.5, each prediction used once."""
    free, found = list(predicted), 0
    for obj in truth:
        for j, (name, box) in enumerate(free):
            if name == obj["label"] and _iou(box, obj["box"]) >= 0.5:
                found += 1
                del free[j]
                break
    return found


@torch.no_grad()
def heads(model_path: str, data: Path, split: str) -> dict:
    from ofa import load
    from ofa.data.pretrain_tsv import read_pretrain_tsv
    from ofa.preprocess import load_image
    from ofa.tokenizer import CODE_OFFSET, EOS, PAD
    from ofa.train.featurize import collate
    from ofa.train.pretrain import DETECTION, Negatives, PretrainSamples

    m = load(model_path)
    model, tok = m.model.eval(), m.tokenizer
    size = m.image_size
    make = PretrainSamples(tok, Negatives.load(data / "negatives"), max_source_length=48,
                           max_target_length=24)

    def samples(kind: str, pick) -> list:
        rows = read_pretrain_tsv(data / f"{kind}_{split}.tsv", kind)
        out = []
        for i, r in enumerate(rows):
            out += pick(r, make(r, size, np.random.default_rng([0, i])))
        return out

    def logits(batch):
        return model(batch.source, batch.decoder_input, batch.images, batch.image_mask,
                     code_mask=batch.code_mask).float()

    def chunks(items, n=64):
        return (collate(items[i:i + n]) for i in range(0, len(items), n))

    out: dict[str, float] = {}
    yes, no = tok.encode(" yes", add_bos_eos=False)[0], tok.encode(" no", add_bos_eos=False)[0]
    itm = samples("pairs", lambda r, s: [s[1]] if r["pretrain"] in ("caption", "qa") else [])
    right = 0
    for b in chunks(itm):
        first = logits(b)[:, 0]
        right += int(((first[:, yes] > first[:, no]) == b.target[:, 0].eq(yes)).sum())
    out["itm_acc"], out["itm_samples"] = right / len(itm), len(itm)
    positives = sum(s.target[0] == yes for s in itm)
    out["itm_positive_share"] = positives / len(itm)

    for kind, key in (("text", "text_infill_token_acc"), ("image", "image_infill_code_acc")):
        right = total = 0
        for b in chunks(samples(kind, lambda r, s: s)):
            scores = logits(b)
            mask = b.target.ne(PAD) & b.target.ne(EOS)
            if kind == "image":  # over the VQGAN's codes only
                pred = scores[..., CODE_OFFSET:CODE_OFFSET + 512].argmax(-1) + CODE_OFFSET
            else:
                pred = scores.argmax(-1)
            right += int((pred.eq(b.target) & mask).sum())
            total += int(mask.sum())
        out[key], out[f"{kind}_targets"] = right / total, total

    rows = read_pretrain_tsv(data / f"detection_{split}.tsv", "detection")
    found = total = 0
    for start in range(0, len(rows), 32):
        chunk = rows[start:start + 32]
        images = [load_image(r["image"]) for r in chunk]
        results = m.run("generate", images, prompt=DETECTION, batch_size=32)
        for r, image, res in zip(chunk, images, results, strict=True):
            found += recall(parse_objects(res["text"], *image.size), r["objects"])
            total += len(r["objects"])
    out["detection_recall@0.5"], out["detection_objects"] = found / total, total
    return out


def chance(records_path: str, limit: int | None = None) -> dict:
    """Guessing on the caption, VQA and grounding records, the first ``limit`` of them in
    file order (as ``ofa eval --tasks caption,vqa,ground --limit N`` picks them)."""
    from ofa.data.records import read_jsonl
    from ofa.tasks import TASKS

    out: dict[str, float] = {}
    records = read_jsonl(records_path, ["caption", "vqa", "ground"])[:limit]
    by_task: dict[str, list[dict]] = {}
    for r in records:
        by_task.setdefault(r["task"], []).append(r)
    vqa = by_task["vqa"]
    common = Counter(max(r["answers"], key=r["answers"].get) for r in vqa).most_common(1)[0][0]
    out["vqa_commonest_answer"] = common
    out["vqa_acc"] = TASKS["vqa"].score(vqa, [common] * len(vqa), False)[0]["acc"]
    ground = by_task["ground"]
    boxes: dict[str, list] = {}
    for r in ground:
        boxes.setdefault(r["image"], []).append(r["box"])
    rng = np.random.default_rng(0)
    guesses = [boxes[r["image"]][int(rng.integers(len(boxes[r["image"]])))] for r in ground]
    out["ground_acc@0.5"] = TASKS["ground"].score(ground, guesses, False)[0]["acc@0.5"]
    captions = by_task["caption"]
    shifted = [captions[(i + 1) % len(captions)]["caption"] for i in range(len(captions))]
    scores = TASKS["caption"].score(captions, shifted, False)[0]
    out.update({f"caption_{k}": v for k, v in scores.items()})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="pretrained model folder")
    p.add_argument("--data", type=Path, default=Path("data/shapes/pretrain"))
    p.add_argument("--split", default="val")
    p.add_argument("--chance", action="store_true", help="score guessing instead")
    p.add_argument("--records", default="data/shapes/test.jsonl")
    p.add_argument("--limit", type=int, default=None, help="--chance: the first N records")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = p.parse_args()
    torch.set_num_threads(2)
    result = (chance(args.records, args.limit) if args.chance
              else heads(args.model, args.data, args.split))
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
