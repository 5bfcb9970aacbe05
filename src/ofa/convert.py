"""Convert any OFA checkpoint to the native folder: the one path that ``ofa convert``, the
download cache (:func:`ofa.download.fetch_pretrained`) and the demo export
(:func:`ofa.demo.export_demo`) share.

Steps: read the checkpoint in any layout (:func:`ofa.checkpoints.read_checkpoint`), find its
tokenizer, build the model (checked against the weights before memory is allocated), and write
the folder atomically (:func:`ofa.checkpoints.save_native`: a reader never sees half of it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import InputError
from .tokenizer import BART_FILES, OFFICIAL_FILES, OFATokenizer
from .tokenizer_cn import CN_VOCAB_FILES, AnyTokenizer, ChineseTokenizer

if TYPE_CHECKING:
    import torch

__all__ = ["ConvertResult", "check_vocabulary", "convert_checkpoint", "find_tokenizer",
           "load_tokenizer"]

VOCAB_HELP = (
    "--vocab DIR with encoder.json, vocab.bpe and dict.txt (OFA repository, utils/BPE) or "
    "vocab.json and merges.txt (any OFA HF checkpoint); for a Chinese checkpoint, vocab.txt "
    "or dict.txt (OFA repository, utils/BERT_CN_dict)")
NO_TOKENIZER = f"no tokenizer files next to the checkpoint; pass {VOCAB_HELP}"


def load_tokenizer(path: str | os.PathLike[str]) -> AnyTokenizer:
    """The tokenizer in a folder (or a Chinese ``vocab.txt`` / ``dict.txt`` file): English
    GPT-2 BPE when its files are complete (the official BPE folder holds a dict.txt too),
    else the Chinese WordPiece of ``vocab.txt`` / ``dict.txt``."""
    p = Path(path)
    if p.is_file() and p.name in CN_VOCAB_FILES:
        return ChineseTokenizer.from_file(p)
    english = (BART_FILES, OFFICIAL_FILES)
    if p.is_dir() and not any(all((p / f).is_file() for f in files) for files in english) \
            and any((p / f).is_file() for f in CN_VOCAB_FILES):
        return ChineseTokenizer.from_dir(p)
    return OFATokenizer.from_dir(p)


def check_vocabulary(tokenizer: AnyTokenizer, vocab_size: int, where: str) -> None:
    """One clear error when the tokenizer's ids do not index the checkpoint's embedding."""
    if tokenizer.vocab_size != vocab_size:
        kind = {"en": "English GPT-2 BPE", "zh": "Chinese BERT WordPiece"}[tokenizer.language]
        raise InputError(
            f"{where}: the vocabulary ({kind}, {tokenizer.vocab_size:,} ids) does not match "
            f"the checkpoint's embedding of {vocab_size:,} rows; give the checkpoint's own "
            f"vocabulary (vocab= in Python): {VOCAB_HELP}")


@dataclass(frozen=True)
class ConvertResult:
    """What :func:`convert_checkpoint` read and wrote."""

    src: Path
    out: Path  # the native folder
    format: str  # the source layout: 'fairseq', 'hf', 'mmpretrain' or 'native'
    description: str  # checkpoints.describe(config): size, layers, heads
    used_ema: bool  # the EMA weights of a fairseq file were taken
    num_parameters: int

    def summary(self) -> str:
        """The line ``ofa convert`` prints."""
        weights = "EMA" if self.used_ema else "regular"
        return (f"{self.src} ({self.format}, {self.description}, {weights} weights, "
                f"{self.num_parameters:,} parameters) -> {self.out}")


def find_tokenizer(vocab: str | os.PathLike[str] | None,
                   fallback: str | os.PathLike[str] | None) -> AnyTokenizer:
    """The tokenizer in ``vocab`` (an explicit folder or Chinese vocabulary file: its errors
    are the user's to see), else the one in ``fallback`` (the files next to the checkpoint),
    else one InputError line."""
    if vocab is not None:
        return load_tokenizer(vocab)
    if fallback is not None:
        try:
            return load_tokenizer(fallback)
        except InputError:
            pass
    raise InputError(NO_TOKENIZER)


def convert_checkpoint(
        src: str | os.PathLike[str], dst: str | os.PathLike[str], *,
        ema: bool | None = None, vocab: str | os.PathLike[str] | None = None,
        source: Mapping | None = None, meta_keys: Collection[str] | None = None,
        dtype: torch.dtype | None = None,
        tokenizer: Callable[[OFATokenizer], OFATokenizer] | None = None,
        answers: Sequence[str] | None = None) -> ConvertResult:
    """Convert the checkpoint ``src`` (fairseq .pt, HF folder, mmpretrain .pth, native folder)
    into the native folder ``dst`` (which must not exist or be empty).

    * ``ema``: passed to ``read_checkpoint`` (None: the EMA weights when the file has them).
    * ``vocab``: the tokenizer folder; default the tokenizer files next to ``src``.
    * ``source``: fields added to the ``source`` record of ``config.json``, over what reading
      learned (``format``, ``layout``, ``file``, ``ema``, a native folder's own record);
      ``meta_keys`` keeps only those keys of the latter.
    * ``dtype``: the weights' dtype in the folder (default: as read, fp32 for published files).
    * ``tokenizer``: a function applied to the tokenizer found (the demo keeps only its
      vocabulary's tokens).
    * ``answers``: the VQA answer list to write as ``answers.txt``; default the list a native
      ``src`` folder carries, if any.
    """
    from .checkpoints import (
        describe,
        model_answers,
        model_from_checkpoint,
        read_checkpoint,
        save_native,
    )

    ckpt = read_checkpoint(src, ema=ema)
    tok = find_tokenizer(vocab, ckpt.tokenizer_dir)
    check_vocabulary(tok, ckpt.config.vocab_size, str(src))
    if tokenizer is not None:
        tok = tokenizer(tok)
    if answers is None and ckpt.format == "native":
        answers = model_answers(ckpt.path)
    meta = {k: v for k, v in ckpt.meta.items() if meta_keys is None or k in meta_keys}
    meta.update(source or {})
    model = model_from_checkpoint(ckpt, dtype=dtype)
    result = ConvertResult(src=Path(src), out=Path(dst), format=ckpt.format,
                           description=describe(ckpt.config), used_ema=ckpt.used_ema,
                           num_parameters=model.num_parameters())
    del ckpt  # the state dict: the model holds its own copy of every weight
    save_native(model, dst, tok, source=meta,
                answers=None if answers is None else list(answers))
    return result
