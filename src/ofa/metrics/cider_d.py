"""CIDEr-D with document frequencies fixed in advance: the reward of self-critical training.

The caption metric (:mod:`ofa.metrics.caption`, pycocoevalcap) counts n-gram document
frequencies over the references it scores. Self-critical training (SCST) instead scores a few
sampled captions of each image in a batch against its references with frequencies counted once
over the whole training set, as OFA does with its cached ``coco-train-words`` file
(OFA-Sys/OFA criterions/scst_loss.py, utils/cider): the n-gram weights then do not depend on
the batch. pycocoevalcap's scorer cannot take fixed frequencies, so CIDEr-D is computed here;
with frequencies counted from the scored references it equals pycocoevalcap's ``Cider``
(tests/metrics/test_cider_d.py).

CIDEr-D (Vedantam et al. 2015, the coco-caption code): per n = 1..4, tf-idf vectors of the
candidate's and each reference's n-grams, idf = log(images) - log(max(1, df)); the candidate's
weights are clipped at the reference's, the cosine is damped by exp(-delta^2 / (2 sigma^2))
with delta the length difference (counted, as that code counts it, in bigrams), averaged over
n and references and multiplied by 10.

:class:`DocumentFrequency` files are gzipped JSON (never a pickle): ``ofa data cider-df``
writes one from a training set's captions.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import string
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = ["DocumentFrequency", "cider_d", "reference_sets", "scst_text"]

MAX_N = 4
SIGMA = 6.0
FORMAT = "ofa-cider-df"
_PUNCTUATION = str.maketrans("", "", string.punctuation)

NGrams = Counter[tuple[str, ...]]


def scst_text(caption: str) -> str:
    """A caption as OFA's SCST reward reads it: punctuation removed, a final " <eos>" word
    appended (so that how a caption ends is scored too)."""
    return caption.strip().translate(_PUNCTUATION).strip() + " <eos>"


def reference_sets(records: Iterable[dict]) -> list[list[str]]:
    """The caption references of ``records`` grouped per image, in first-seen order: a record
    whose ``caption`` is a list (an official val/test/stage-2 row, "&&"-joined) is one image's
    set; single captions of the same image (its path, or its bytes) are gathered. Each goes
    through ``pre_caption`` (lowercase, as the model's caption targets are). Records of other
    tasks are skipped."""
    import hashlib

    from ..tasks.text import pre_caption

    sets: dict[object, list[str]] = {}
    for i, record in enumerate(records):
        if record.get("task", "caption") != "caption" or "caption" not in record:
            continue
        caption, image = record["caption"], record.get("image")
        refs = [caption] if isinstance(caption, str) else list(caption)
        if not refs or not all(isinstance(r, str) for r in refs):
            raise InputError(f"record {i}: caption must be a string or a list of strings")
        if isinstance(caption, list) or image is None:
            key: object = ("row", i)
        elif isinstance(image, str):
            key = image
        elif isinstance(image, bytes | bytearray):
            key = hashlib.sha1(image).hexdigest()
        else:  # a decoded image: no cheap identity, one set per record
            key = ("row", i)
        sets.setdefault(key, []).extend(pre_caption(r) for r in refs)
    if not sets:
        raise InputError("no caption records to take references from")
    return list(sets.values())


def _ngrams(text: str) -> NGrams:
    words = text.split()
    return Counter(tuple(words[i:i + n]) for n in range(1, MAX_N + 1)
                   for i in range(len(words) - n + 1))


@dataclass(frozen=True)
class DocumentFrequency:
    """For each n-gram, in how many images' reference sets it occurs, and how many images
    there were (``images``: its log is the idf's numerator)."""

    counts: dict[tuple[str, ...], int]
    images: int

    @classmethod
    def from_references(cls, references: Iterable[Sequence[str]], prepared: bool = False
                        ) -> DocumentFrequency:
        """Count over one reference set per image. ``prepared``: the texts already went
        through :func:`scst_text` (otherwise they are, here)."""
        counts: Counter[tuple[str, ...]] = Counter()
        images = 0
        for refs in references:
            seen: set[tuple[str, ...]] = set()
            for ref in refs:
                seen.update(_ngrams(ref if prepared else scst_text(ref)))
            counts.update(seen)
            images += 1
        if images == 0:
            raise InputError("no references to count document frequencies from")
        return cls(dict(counts), images)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write gzipped JSON (n-grams as space-joined words) and return the path."""
        out = Path(path)
        data = {"format": FORMAT, "version": 1, "max_n": MAX_N, "images": self.images,
                "ngrams": {" ".join(k): v for k, v in sorted(self.counts.items())}}
        out.parent.mkdir(parents=True, exist_ok=True)
        # no name or time in the gzip header: the same counts give the same bytes
        with out.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", filename="",
                                                   mtime=0) as f:
            f.write(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode())
        return out

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> DocumentFrequency:
        p = Path(path)
        try:
            with gzip.open(p, "rb") as f:
                data = json.loads(f.read().decode("utf-8"))
        except FileNotFoundError:
            raise InputError(f"no document-frequency file at {p}") from None
        except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(f"{p} is not a document-frequency file written by `ofa data "
                             f"cider-df` ({e})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise InputError(f"{p} is not a document-frequency file written by `ofa data "
                             "cider-df`")
        images, ngrams = data.get("images"), data.get("ngrams")
        if (isinstance(images, bool) or not isinstance(images, int) or images < 1
                or not isinstance(ngrams, dict)
                or not all(isinstance(v, int) and 0 < v <= images for v in ngrams.values())):
            raise InputError(f"{p}: malformed counts")
        return cls({tuple(k.split(" ")): v for k, v in ngrams.items()}, images)


def _vectors(grams: NGrams, df: DocumentFrequency, log_images: float
             ) -> tuple[list[dict[tuple[str, ...], float]], np.ndarray, int]:
    """tf-idf weights per n, their norms, and the length as coco-caption counts it."""
    weights: list[dict[tuple[str, ...], float]] = [{} for _ in range(MAX_N)]
    norms = np.zeros(MAX_N)
    length = 0
    for gram, tf in grams.items():
        n = len(gram) - 1
        w = tf * (log_images - math.log(max(1.0, df.counts.get(gram, 0))))
        weights[n][gram] = w
        norms[n] += w * w
        if n == 1:  # coco-caption's CiderScorer counts the length in bigrams; kept for parity
            length += tf
    return weights, np.sqrt(norms), length


def _similarity(hyp, ref, sigma: float) -> float:
    (wh, nh, lh), (wr, nr, lr) = hyp, ref
    total = 0.0
    for n in range(MAX_N):
        value = sum(min(w, wr[n].get(g, 0.0)) * wr[n].get(g, 0.0) for g, w in wh[n].items())
        if nh[n] != 0 and nr[n] != 0:
            value /= nh[n] * nr[n]
        total += value * math.exp(-((lh - lr) ** 2) / (2 * sigma ** 2))
    return total / MAX_N


def cider_d(candidates: Sequence[str], references: Sequence[Sequence[str]],
            df: DocumentFrequency | None = None, sigma: float = SIGMA,
            prepared: bool = False) -> np.ndarray:
    """CIDEr-D of each candidate against its reference set (float64 [N]).

    ``df``: fixed document frequencies (SCST); None counts them over ``references`` with one
    set per candidate, as pycocoevalcap does. ``prepared``: the texts already went through
    :func:`scst_text` (otherwise they do here); give them prepared when ``df`` was counted
    from prepared texts, so both read words alike.
    """
    if len(candidates) != len(references):
        raise InputError(f"{len(candidates)} candidates for {len(references)} reference sets")
    prep = (lambda t: t) if prepared else scst_text
    hyps = [_ngrams(prep(c)) for c in candidates]
    refs = [[_ngrams(prep(r)) for r in rs] for rs in references]
    if any(not rs for rs in refs):
        raise InputError("every candidate needs at least one reference")
    if df is None:
        counts: Counter[tuple[str, ...]] = Counter()
        for rs in refs:
            counts.update({g for r in rs for g in r})
        df = DocumentFrequency(dict(counts), len(refs))
    log_images = math.log(float(df.images))
    scores = np.zeros(len(candidates))
    for i, (h, rs) in enumerate(zip(hyps, refs, strict=True)):
        hv = _vectors(h, df, log_images)
        scores[i] = 10.0 * sum(_similarity(hv, _vectors(r, df, log_images), sigma)
                               for r in rs) / len(rs)
    return scores
