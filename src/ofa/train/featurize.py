"""Training featurization: turns records (the format of :mod:`ofa.data.records`) into
teacher-forced samples and padded batches. Prompts come from the task table (:mod:`ofa.tasks`),
so a model is trained on exactly the inputs it is later asked with.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..generate import Trie
from ..preprocess import ImageTransform, image_pixels, load_image, resize_as
from ..tasks import TASKS, get_task
from ..tasks.base import require_language
from ..tasks.caption import references as caption_references
from ..tokenizer import BOS, CODE_OFFSET, EOS, NUM_CODES, PAD, OFATokenizer, pad_batch
from .loss import NUM_SPECIAL_IDS, range_mask


@dataclass
class Sample:
    """One teacher-forced training example. ``decoder_input`` is BOS + prefix + answer;
    ``target`` is aligned with it: PAD under the prefix (no loss), then answer + EOS.
    ``allowed`` (answer-constrained samples only) is aligned with ``target`` too: the token ids
    the official trie mask allows at each answer position, None under the prefix."""

    task: str
    source: list[int]
    decoder_input: list[int]
    target: list[int]
    weight: float = 1.0
    image: torch.Tensor | None = None
    allowed: list[list[int] | None] | None = None
    # the target is image codes: decoded in code mode, its loss over the code ids only (the
    # official image_gen training's constraint_range 50265,58457)
    code: bool = False
    references: list[str] | None = None  # a caption's references (SCST's reward reads them)
    # loss group: the official pretraining normalises its extra samples (text, image and
    # detection, group 1) by their own token count, apart from the pairs (group 0)
    group: int = 0


# Tasks whose targets can be constrained to a candidate list in training (the official VQA,
# SNLI-VE, ImageNet and GLUE fine-tuning build a trie over the candidates and mask the loss
# with it).
CONSTRAINABLE_TASKS = ("vqa", "entail", "classify", "glue")


def candidate_tries(tasks: Sequence[str], tokenizer: OFATokenizer, *,
                    vqa_answers: Sequence[str] | None, records: Sequence[dict]
                    ) -> dict[str, Trie]:
    """The answer trie of each constrainable task among ``tasks``: VQA over ``vqa_answers``,
    entailment over yes / no / maybe, classification over the labels found in ``records``,
    GLUE over the label words of the datasets in ``records`` (one dataset: exactly its own,
    as OFA-Sys/OFA tasks/nlu_tasks/*.py build them)."""
    tries = {}
    for task in tasks:
        if task == "vqa":
            if not vqa_answers:
                raise InputError("constraining VQA targets needs data.vqa_answers (the "
                                 "candidate answer list)")
            tries[task] = Trie.from_answers(tokenizer, vqa_answers)
        elif task == "entail":
            tries[task] = Trie.from_answers(tokenizer, TASKS[task].candidates())
        elif task == "classify":
            labels = sorted({r["label"].strip() for r in records if r.get("task") == task})
            tries[task] = Trie.from_answers(tokenizer, labels)
        elif task == "glue":
            from ..tasks.glue import get_dataset

            names = dict.fromkeys(r["dataset"] for r in records if r.get("task") == task)
            words = dict.fromkeys(w for n in names for w in get_dataset(n).words)
            tries[task] = Trie.from_answers(tokenizer, list(words))
    return tries


def _allowed_by_trie(trie: Trie, answer: list[int], record: dict) -> list[list[int] | None]:
    """Allowed ids at each answer position and at the final EOS; error if the answer is not a
    path of the trie (the official loss would be infinite there)."""
    allowed = []
    for t, token in enumerate([*answer, EOS]):
        ids = trie.allowed([BOS, *answer[:t]])
        if token not in ids:
            raise InputError(f"record {record.get('id', '?')}: its {record['task']} target is "
                             "not among the constraint's candidates (add it to the answer list"
                             ", or drop constrain from this dataset)")
        allowed.append(ids)
    return allowed


def target_text(record: dict) -> tuple[str, float]:
    """What the decoder must produce for a record, and the sample's confidence weight."""
    return get_task(record["task"]).target_text(record)


def load_resized(image: Any, size: int, mode: str = "squash"
                 ) -> tuple[torch.Tensor, tuple[int, int]]:
    """``(uint8 pixels (3, size, size) of the resized image, original (width, height))``;
    ``mode``: how it is resized (:func:`ofa.preprocess.resize_as`)."""
    pil = load_image(image)
    return image_pixels(resize_as(pil, size, mode)), pil.size


@functools.lru_cache(maxsize=64)
def _transform(size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> ImageTransform:
    return ImageTransform(size, mean, std)  # built once: a batch builds 64 samples


class ResizedImageCache:
    """Training images kept decoded and resized (uint8 tensor, ``S*S*3`` bytes each) by file
    path.

    A multitask dataset reads each image many times (ShapesWorld: every scene gives a caption,
    questions, expressions and statements); decoding and resizing it once saves most of the
    batch-building time. Images given as bytes or arrays are not cached.
    """

    def __init__(self) -> None:
        self._images: dict[tuple[str, int, str], tuple[torch.Tensor, tuple[int, int]]] = {}

    def __len__(self) -> int:
        return len(self._images)

    def get(self, image: Any, size: int, mode: str = "squash"
            ) -> tuple[torch.Tensor, tuple[int, int]]:
        """``(uint8 pixels (3, size, size) of the resized image, original (width, height))``."""
        key = (os.fspath(image), size, mode) if isinstance(image, str | os.PathLike) else None
        hit = self._images.get(key) if key is not None else None
        if hit is None:
            hit = load_resized(image, size, mode)
            if key is not None:
                self._images[key] = hit
        return hit


def image_input(image: Any, task: str, image_size: int | None = None,
                image_cache: ResizedImageCache | None = None
                ) -> tuple[torch.Tensor, tuple[tuple[int, int], int]]:
    """``(normalised image [3, S, S], (original (width, height), S))`` as ``task`` preprocesses
    it, at ``image_size`` (default: the task's official size)."""
    cfg = get_task(task).preprocess.with_size(image_size)
    load = image_cache.get if image_cache is not None else load_resized
    pixels, size = load(image, cfg.size, cfg.resize)
    return _transform(cfg.size, cfg.mean, cfg.std).normalize(pixels), (size, cfg.size)


def build_sample(record: dict, tokenizer: OFATokenizer, image_size: int | None = None,
                 max_source_length: int = 128, max_target_length: int = 64,
                 image_cache: ResizedImageCache | None = None,
                 tries: dict[str, Trie] | None = None, decoder_noise: float = 0.0,
                 rng: np.random.Generator | None = None) -> Sample:
    """Tokens (and image) of one record, prompts exactly as :mod:`ofa.tasks` builds them.
    ``image_size`` overrides the task's official input size (small models use small images);
    ``image_cache`` keeps the resized images of image files for the next time they are read;
    ``tries`` (see :func:`candidate_tries`) constrains the targets of the tasks it names;
    ``decoder_noise`` replaces that share of the answer's decoder inputs by random text tokens
    drawn from ``rng`` (the official --noise-ratio)."""
    name = record["task"]
    # the table's task module: fine-tuned style prompts (VQA and entailment take the question
    # as decoder prefix)
    task = get_task(name)
    require_language(task, tokenizer)
    options = task.record_options(record)
    if options:  # a record that sets its own options (a GLUE record's dataset)
        task = task.configure(**options)
    image = size = patch = None
    if task.preprocess is not None:
        image, (size, patch) = image_input(record["image"], name, image_size, image_cache)
    fields = {k: v[0] for k, v in task.inputs_from_records([record]).items()
              if v[0] is not None}
    example = task.prepare(tokenizer, record["id"], **fields)
    example.image_size = size
    answer, weight = task.target_tokens(tokenizer, record, example, patch)
    source = example.source
    if len(source) > max_source_length:
        source = source[:max_source_length - 1] + [EOS]
    code = task.kind == "draw"
    if not code:  # a code grid is whole or useless: never cut
        answer = answer[:max_target_length]
    prefix = list(example.prefix)
    decoder_input = [BOS, *prefix, *noisy(answer, decoder_noise, rng)]
    target = [PAD] * len(prefix) + [*answer, EOS]
    trie = (tries or {}).get(name)
    allowed = None if trie is None else [None] * len(prefix) + _allowed_by_trie(trie, answer,
                                                                                record)
    refs = caption_references(record) if name == "caption" else None
    return Sample(name, source, decoder_input, target, weight, image, allowed, code, refs)


def noisy(tokens: list[int], ratio: float, rng: np.random.Generator | None) -> list[int]:
    """``tokens`` with each replaced, with probability ``ratio``, by a random text token (ids
    4 to the first image code, as OFA-Sys/OFA data/nlg_data/summary_dataset.py draws them)."""
    if ratio <= 0 or not tokens:
        return tokens
    if rng is None:
        raise ValueError("decoder noise needs a seeded rng")
    hit = rng.random(len(tokens)) < ratio
    random_ids = rng.integers(NUM_SPECIAL_IDS, CODE_OFFSET, size=len(tokens))
    return [int(r) if h else t for t, h, r in zip(tokens, hit, random_ids, strict=True)]


@dataclass
class Batch:
    """Padded tensors of a list of samples (``images`` is None for a text-only batch)."""

    tasks: list[str]
    source: torch.Tensor
    images: torch.Tensor | None
    image_mask: torch.Tensor | None
    decoder_input: torch.Tensor
    target: torch.Tensor
    weights: torch.Tensor
    # answer constraints: rows of target[target != PAD] (row-major) and the ids each allows
    # (None: the image-code range)
    allowed_rows: torch.Tensor | None = None
    allowed_ids: list[list[int] | None] | None = None
    code_mask: torch.Tensor | None = None  # [B] bool: samples whose target is image codes
    references: list[list[str] | None] | None = None  # per sample: Sample.references
    group: int = 0  # the samples' loss group (Sample.group)

    @property
    def ntokens(self) -> int:
        return int(self.target.ne(PAD).sum())

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Batch:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        images = self.images
        if images is not None:
            images = images.to(device, dtype if dtype is not None else images.dtype)
        return Batch(self.tasks, move(self.source), images, move(self.image_mask),
                     move(self.decoder_input), move(self.target), move(self.weights),
                     move(self.allowed_rows), self.allowed_ids, move(self.code_mask),
                     self.references, self.group)

    def split_constraints(self, vocab_size: int
                          ) -> tuple[torch.Tensor | None, torch.Tensor | None,
                                     torch.Tensor | None]:
        """(answer rows, their [rows, V] allowed mask, image-code rows): the constrained rows of
        ``allowed_rows`` in two kinds, each None when there is none. Code rows need no mask:
        their constraint is the code range (and the specials), which the loss computes on
        those columns only."""
        if self.allowed_ids is None:
            return None, None, None
        code = [i for i, ids in enumerate(self.allowed_ids) if ids is None]
        if not code:
            return self.allowed_rows, self.allowed_mask(vocab_size), None
        answers = [i for i, ids in enumerate(self.allowed_ids) if ids is not None]
        device = self.allowed_rows.device
        code_rows = self.allowed_rows[torch.tensor(code, device=device)]
        if not answers:
            return None, None, code_rows
        only = dataclasses.replace(self, allowed_ids=[self.allowed_ids[i] for i in answers],
                                   allowed_rows=self.allowed_rows[torch.tensor(answers,
                                                                               device=device)])
        return only.allowed_rows, only.allowed_mask(vocab_size), code_rows

    def allowed_mask(self, vocab_size: int) -> torch.Tensor | None:
        """[len(allowed_rows), V] bool mask of the constrained rows, or None."""
        if self.allowed_ids is None:
            return None
        device = self.target.device
        mask = torch.zeros(len(self.allowed_ids), vocab_size, dtype=torch.bool, device=device)
        rows = [r for r, ids in enumerate(self.allowed_ids) if ids is not None for _ in ids]
        cols = [i for ids in self.allowed_ids if ids is not None for i in ids]
        if rows:
            mask[torch.tensor(rows, device=device), torch.tensor(cols, device=device)] = True
        code_rows = [r for r, ids in enumerate(self.allowed_ids) if ids is None]
        if code_rows:
            mask[torch.tensor(code_rows, device=device)] = range_mask(
                vocab_size, CODE_OFFSET, CODE_OFFSET + NUM_CODES, device=device)
        return mask


def _constrained_rows(samples: Sequence[Sample]) -> tuple[list[int], list[list[int]]]:
    """Rows of the flattened (non-PAD) targets that carry a constraint, and their allowed ids."""
    rows: list[int] = []
    ids: list[list[int] | None] = []
    if all(s.allowed is None and not s.code for s in samples):  # the common case
        return rows, ids
    row = 0
    for s in samples:
        for j, t in enumerate(s.target):
            if t == PAD:
                continue
            if s.code:
                rows.append(row)
                ids.append(None)  # the code range
            elif s.allowed is not None and s.allowed[j] is not None:
                rows.append(row)
                ids.append(s.allowed[j])
            row += 1
    return rows, ids


def collate(samples: Sequence[Sample]) -> Batch:
    """Right-pad every sequence with PAD; zero images stand in for text-only samples."""
    if not samples:
        raise InputError("cannot collate an empty batch")
    groups = {s.group for s in samples}
    if len(groups) > 1:
        raise ValueError(f"samples of loss groups {sorted(groups)} in one batch")
    with_image = [s.image is not None for s in samples]
    images = mask = None
    if any(with_image):
        shape = next(s.image.shape for s in samples if s.image is not None)
        images = torch.stack([s.image if s.image is not None else torch.zeros(shape)
                              for s in samples])
        mask = None if all(with_image) else torch.tensor(with_image)
    rows, ids = _constrained_rows(samples)
    code = torch.tensor([s.code for s in samples]) if any(s.code for s in samples) else None
    refs = ([s.references for s in samples] if any(s.references for s in samples) else None)
    return Batch([s.task for s in samples], pad_batch([s.source for s in samples]), images,
                 mask, pad_batch([s.decoder_input for s in samples]),
                 pad_batch([s.target for s in samples]),
                 torch.tensor([s.weight for s in samples], dtype=torch.float32),
                 torch.tensor(rows, dtype=torch.long) if rows else None, ids or None, code,
                 refs, groups.pop())
