"""OFA's pretraining tasks as training samples (facts from OFA-Sys/OFA
``data/pretrain_data/unify_dataset.py``).

A pair record (:mod:`ofa.data.pretrain_tsv`) gives two samples: a caption with an image-text
matching (ITM) question about it, a VQA question with a matching question about its answer,
or a referring expression's box with the grounded caption of that box (the region described).
ITM asks about the true caption or answer or, with probability 0.5, about a negative: a
caption with one of its objects swapped (p 0.4 when the row lists objects) or another image's
caption; for answers, one of the same question type (a count off by one for some "how many"
answers). The extras are text infilling (BART whole-word span masking, span lengths Poisson(3),
30% of the words, each span one ``<mask>``), image infilling (the centre of the image blanked,
its VQGAN codes the target) and detection (every object as 4 ``<bin_i>`` and its name); they
weigh 2 in the loss, and form their own loss group (``Sample.group`` 1), normalised by its
own token count as the official loss does with its second batch.

Not reproduced: the random resizes, crops, RandomAugment, flips and scale jitter the official
pipeline applies to pretraining images; here every image is resized to the square input, as
in fine-tuning.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..boxes import box_to_bins
from ..errors import InputError
from ..tasks import get_task, pre_caption
from ..tasks.vqa import VQATask
from ..tokenizer import BOS, CODE_OFFSET, EOS, MASK, PAD, OFATokenizer
from .featurize import Sample, image_input

# the pretraining files (ofa.data.pretrain_tsv) whose samples form the extra loss group
EXTRA_FILES = ("text", "image", "detection")
EXTRA_GROUP = 1
EXTRA_WEIGHT = 2.0  # the official conf of text, image and detection samples

ITM_CAPTION = ' does the image describe " {} "?'
ITM_ANSWER = ' what is the answer to question " {} ". is " {} "?'
REGION_CAPTION = "  what does the region describe? region:"  # two spaces, as trained
TEXT_INFILL = ' what is the complete text of " "?'  # the masked text goes between the quotes
IMAGE_INFILL = " what is the image in the middle part?"
DETECTION = " what are the objects in the image?"
MAX_TEXT_TOKENS = 256  # text infilling keeps a text's last 256 tokens


@dataclass
class Negatives:
    """What ITM's negatives are drawn from (the official ``--neg-sample-dir``): every
    caption (``all_captions.txt``), object names (``object.txt``) and VQA answers by question
    type (``type2ans.json``, with an ``other`` list)."""

    captions: list[str]
    objects: list[str]
    answers_by_type: dict[str, list[str]]

    @classmethod
    def load(cls, folder: str | Path) -> Negatives:
        f = Path(folder)

        def lines(name: str) -> list[str]:
            p = f / name
            if not p.is_file():
                raise InputError(f"data.negatives: {p} not found (all_captions.txt, "
                                 "object.txt, type2ans.json)")
            return [r.strip() for r in p.read_text(encoding="utf-8").splitlines() if r.strip()]

        captions, objects = lines("all_captions.txt"), lines("object.txt")
        try:
            answers = json.loads((f / "type2ans.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(f"data.negatives: cannot read {f / 'type2ans.json'}: {e}") from None
        if not isinstance(answers, dict) or not all(
                isinstance(v, list) and len(v) >= 2 for v in answers.values()) or \
                "other" not in answers:
            raise InputError(f"{f / 'type2ans.json'}: expected {{question type: [answers]}} "
                             "with an 'other' type, at least 2 answers each")
        if len(captions) < 1 or len(objects) < 2:
            raise InputError(f"data.negatives: {f} needs captions and at least 2 objects")
        return cls(captions, objects, {k: [str(a) for a in v] for k, v in answers.items()})

    def __post_init__(self) -> None:
        self.type_of = {a: t for t, answers in self.answers_by_type.items() if t != "other"
                        for a in answers}

    @staticmethod
    def _other(choices: list[str], exclude: str, rng: np.random.Generator) -> str:
        pick = choices[int(rng.integers(len(choices) - 1))]
        return choices[-1] if pick == exclude else pick

    def caption(self, caption: str, objects: list[str], rng: np.random.Generator) -> str:
        if objects and rng.random() > 0.6:
            gt = objects[int(rng.integers(len(objects)))]
            return caption.replace(gt, self._other(self.objects, gt, rng))
        return self.captions[int(rng.integers(len(self.captions)))]

    def answer(self, answer: str, conf: float, rng: np.random.Generator) -> str:
        p = rng.random()
        kind = self.type_of.get(answer) if conf > p + 0.1 else None
        if kind == "how many" and answer.isdigit() and p > 0.5:
            return str(int(answer) + (1 if rng.random() < 0.5 else -1))
        return self._other(self.answers_by_type[kind or "other"], answer, rng)


class TextMasker:
    """BART's whole-word span masking as the official pretraining configures it: span lengths
    from Poisson(3) (zero-length spans become inserted masks), 30% of the words, each span
    replaced by one ``<mask>``, no random tokens."""

    def __init__(self, tokenizer: OFATokenizer, ratio: float = 0.3, poisson_lambda: float = 3.0
                 ) -> None:
        self.ratio = ratio
        # a word starts at a token whose text begins with a space (fairseq's GPT-2 BPE
        # is_beginning_of_word); specials, <mask> and fillers count as starts
        starts = np.ones(MASK + 1, dtype=np.int64)
        for i in range(4, MASK):
            token = tokenizer.id_to_token(i)
            starts[i] = token.startswith("\u0120") or token.startswith("madeupword")
        self.word_start = starts
        probs, term = [], math.exp(-poisson_lambda)
        for k in range(128):
            probs.append(term)
            term *= poisson_lambda / (k + 1)
            if probs[-1] < 1e-7:
                break
        self.span_probs = np.asarray(probs) / sum(probs)

    def _insert(self, ids: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
        n = math.ceil(len(ids) * share)
        where = rng.permutation(len(ids) + n - 2)[:n] + 1
        noise = np.zeros(len(ids) + n, dtype=bool)
        noise[where] = True
        out = np.empty(len(ids) + n, dtype=ids.dtype)
        out[noise], out[~noise] = MASK, ids
        return out

    def __call__(self, ids: list[int], rng: np.random.Generator) -> list[int]:
        """``ids`` (BOS ... EOS) with spans of whole words masked."""
        source = np.asarray(ids, dtype=np.int64)
        is_start = self.word_start[np.minimum(source, MASK)].copy()
        is_start[0] = is_start[-1] = 0
        to_mask = math.ceil(is_start.sum() * self.ratio)
        if to_mask == 0:
            return ids
        lengths = rng.choice(len(self.span_probs), size=to_mask, p=self.span_probs)
        while lengths.sum() < to_mask:
            lengths = np.concatenate([lengths, rng.choice(len(self.span_probs), size=to_mask,
                                                          p=self.span_probs)])
        cum = np.cumsum(lengths)
        last = int(np.searchsorted(cum, to_mask))  # the span that reaches the budget
        lengths[last] = to_mask - (cum[last - 1] if last else 0)
        lengths = lengths[:last + 1]
        inserts = int((lengths == 0).sum())
        lengths = lengths[lengths > 0]
        if len(lengths) == 0:
            return self._insert(source, inserts / len(source), rng).tolist()
        starts = np.flatnonzero(is_start)
        spans = starts[rng.permutation(len(starts))[:len(lengths)]]
        keep = np.ones(len(source), dtype=bool)
        is_start[-1] = 255  # no span runs past the end
        source[spans] = MASK
        lengths = lengths - 1
        while len(spans):  # the span's other tokens go; it ends after `length` more words
            lengths = lengths - is_start[spans + 1]
            going = lengths >= 0
            spans, lengths = spans[going] + 1, lengths[going]
            keep[spans] = False
        source = source[keep]
        if inserts:
            source = self._insert(source, inserts / len(source), rng)
        return source.tolist()


class PretrainSamples:
    """Turns pretraining records into their official samples (module docstring)."""

    def __init__(self, tokenizer: OFATokenizer, negatives: Negatives | None, *,
                 max_source_length: int = 80, max_target_length: int = 30) -> None:
        self.tokenizer, self.negatives = tokenizer, negatives
        self.max_source_length, self.max_target_length = max_source_length, max_target_length
        self.masker = TextMasker(tokenizer)
        self.yes = tokenizer.encode(" yes", add_bos_eos=False)
        self.no = tokenizer.encode(" no", add_bos_eos=False)

    def __call__(self, record: dict, image_size: int | None, rng: np.random.Generator
                 ) -> list[Sample]:
        kind = record.get("pretrain")
        build = {"caption": self._caption, "qa": self._qa, "grounding": self._grounding,
                 "text": self._text, "image": self._image, "detection": self._detection}.get(kind)
        if build is None:
            raise InputError(f"record {record.get('id', '?')}: unknown pretraining kind {kind!r}")
        if kind in ("caption", "qa") and self.negatives is None:
            raise InputError("pretraining caption and qa rows need ITM negatives: set "
                             "data.negatives to a folder with all_captions.txt, object.txt "
                             "and type2ans.json")
        return build(record, image_size, rng)

    # ------------------------------------------------------------------ helpers
    def _sample(self, task: str, source: list[int], answer: list[int], image, *,
                weight: float = 1.0, group: int = 0, code: bool = False) -> Sample:
        return Sample(task, source, [BOS, *answer], [*answer, EOS], weight, image, code=code,
                      group=group)

    def _itm(self, prompt: str, image, positive: bool, weight: float) -> Sample:
        answer = self.yes if positive else self.no
        return self._sample("itm", self.tokenizer.encode(prompt), answer, image, weight=weight)

    # ------------------------------------------------------------------ pairs
    def _caption(self, record: dict, size: int | None, rng: np.random.Generator
                 ) -> list[Sample]:
        image, _ = image_input(record["image"], "caption", size)
        source = get_task("caption").prepare(self.tokenizer, record["id"]).source
        target = self.tokenizer.encode(" " + pre_caption(record["caption"],
                                                         self.max_target_length),
                                       add_bos_eos=False)
        sample = self._sample("caption", source, target, image)
        if record.get("dataset") == "cc12m":  # official: its first two target tokens are unscored
            sample.target[:2] = [PAD] * min(2, len(sample.target) - 1)
        positive = rng.random() >= 0.5
        caption = record["caption"] if positive else self.negatives.caption(
            record["caption"], record.get("objects") or [], rng)
        prompt = ITM_CAPTION.format(pre_caption(caption, self.max_source_length))
        return [sample, self._itm(prompt, image, positive, 1.0)]

    def _qa(self, record: dict, size: int | None, rng: np.random.Generator) -> list[Sample]:
        image, _ = image_input(record["image"], "vqa", size)
        answers = record["answers"]
        answer = max(answers, key=answers.get)
        conf = float(answers[answer])
        example = VQATask(zero_shot=True).prepare(self.tokenizer, record["id"],
                                                  question=record["question"])
        target = self.tokenizer.encode(" " + answer, add_bos_eos=False)
        sample = self._sample("vqa", example.source, target, image, weight=conf)
        positive = rng.random() >= 0.5
        shown = answer if positive else self.negatives.answer(answer, conf, rng)
        prompt = ITM_ANSWER.format(example.info["question"], shown)
        return [sample, self._itm(prompt, image, positive, conf)]

    def _grounding(self, record: dict, size: int | None, rng: np.random.Generator
                   ) -> list[Sample]:
        image, (original, patch) = image_input(record["image"], "ground", size)
        text = pre_caption(record["text"], self.max_source_length)
        source = get_task("ground").prepare(self.tokenizer, record["id"], text=text).source
        bins = box_to_bins(record["box"], original, patch)
        region = self.tokenizer.encode(REGION_CAPTION, add_bos_eos=False)
        caption = self.tokenizer.encode(" " + pre_caption(record["text"],
                                                          self.max_target_length),
                                        add_bos_eos=False)
        return [self._sample("ground", source, bins, image),
                self._sample("region_caption", [BOS, *region, *bins, EOS], caption, image)]

    # ------------------------------------------------------------------ extras
    def _text(self, record: dict, size: int | None, rng: np.random.Generator) -> list[Sample]:
        words = self.tokenizer.encode(" " + record["text"].strip().lower(), add_bos_eos=False)
        words = words[:512][-MAX_TEXT_TOKENS:]
        masked = self.masker([BOS, *words, EOS], rng)[1:-1]
        prompt = self.tokenizer.encode(TEXT_INFILL, add_bos_eos=False)
        source = [BOS, *prompt[:-2], *masked, *prompt[-2:], EOS]
        return [self._sample("text_infill", source, words, None, weight=EXTRA_WEIGHT,
                             group=EXTRA_GROUP)]

    def _image(self, record: dict, size: int | None, rng: np.random.Generator) -> list[Sample]:
        image = blank_centre(image_input(record["image"], "caption", size)[0])
        codes = [CODE_OFFSET + c for c in record["codes"]]
        return [self._sample("image_infill", self.tokenizer.encode(IMAGE_INFILL), codes, image,
                             weight=EXTRA_WEIGHT, group=EXTRA_GROUP, code=True)]

    def _detection(self, record: dict, size: int | None, rng: np.random.Generator
                   ) -> list[Sample]:
        image, (original, patch) = image_input(record["image"], "ground", size)
        target: list[int] = []
        for obj in record["objects"]:
            target += box_to_bins(obj["box"], original, patch)
            target += self.tokenizer.encode(" " + obj["label"], add_bos_eos=False)
        return [self._sample("detect", self.tokenizer.encode(DETECTION), target, image,
                             weight=EXTRA_WEIGHT, group=EXTRA_GROUP)]


def blank_centre(image: torch.Tensor) -> torch.Tensor:
    """The official image-infilling input: the middle half of each side set to 0 (mid grey
    after normalisation)."""
    side = image.shape[-1]
    out = image.clone()
    out[:, side // 4:3 * side // 4, side // 4:3 * side // 4] = 0
    return out
