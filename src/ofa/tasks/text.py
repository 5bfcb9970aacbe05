"""Text normalisation exactly as the official data code does it (``pre_caption``,
``pre_question``, caption punctuation stripping)."""

from __future__ import annotations

import re
import string

from ..errors import InputError

_LEADING = ",.!?*#:;~"
_PUNCT_TABLE = str.maketrans("", "", string.punctuation)


def _normalise(text: str, max_words: int, *, person: bool = False) -> str:
    text = text.lower().lstrip(_LEADING).replace("-", " ").replace("/", " ")
    if person:
        text = text.replace("<person>", "person")
    text = re.sub(r"\s{2,}", " ", text).rstrip("\n").strip(" ")
    words = text.split(" ")
    return " ".join(words[:max_words])


def pre_caption(text: str, max_words: int = 80) -> str:
    """Captions, referring expressions, hypotheses: lowercase, drop leading punctuation, turn
    ``-`` and ``/`` into spaces and the ``<person>`` placeholder of some datasets into
    ``person``, collapse whitespace, keep at most ``max_words`` words (OFA-Sys/OFA
    ``data/ofa_dataset.py``; questions keep ``<person>``, as there)."""
    return _normalise(text, max_words, person=True)


def pre_question(question: str, max_words: int = 80) -> str:
    """VQA questions: as ``pre_caption``, then end with ``?`` as the VQA dataset does."""
    q = _normalise(question, max_words)
    return q if q.endswith("?") else q + "?"


def strip_punctuation(text: str) -> str:
    """Caption post-processing of the official evaluation (``str.translate`` of punctuation)."""
    return text.translate(_PUNCT_TABLE).strip()


# spaces the Chinese decode leaves next to anything but ASCII letters, digits and .,:!?
# (ModelScope's OFA post-processing of Chinese generation)
_CHINESE_SPACES = re.compile(r"((?<=[^ a-zA-Z0-9.,:!?]) +| +(?=[^ a-zA-Z0-9.,:!?]))")
# CJK ideographs, the characters BERT-Chinese makes tokens of their own
_CJK = re.compile("([\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f])")


def join_chinese(text: str) -> str:
    """A Chinese decode (``图 片 上 的 cat``) as text (``图片上的cat``): spaces stay only
    between ASCII words."""
    return _CHINESE_SPACES.sub("", text).strip()


def split_cjk(text: str) -> str:
    """Every CJK character a word of its own (character-level scoring of Chinese captions,
    as the official Chinese decode spaces them); other text is unchanged."""
    return " ".join(_CJK.sub(r" \1 ", text).split())


def require_text(text: object, what: str) -> str:
    """A non-empty string, or a clear InputError naming ``what`` was wrong."""
    if not isinstance(text, str):
        raise InputError(f"{what} must be a string, got {type(text).__name__}")
    if not text.strip():
        raise InputError(f"{what} is empty")
    return text
