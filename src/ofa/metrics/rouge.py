"""ROUGE for summarisation (Gigaword), with OFA's hypothesis clean-up.

OFA's Gigaword evaluation lowercases a generated summary, re-tokenises it the way the
reference data is tokenised (``fix_tokenization``: PTB-style brackets and quotes, ``n't``,
re-joined numbers and hyphenated words) and writes ``1`` as ``#``, then scores ROUGE-1/2/L
F-measures with Google's ``rouge-score`` package and the Porter stemmer. The references are
used as they are: the data set already writes digits as ``#``.
"""

from __future__ import annotations

import string
from collections.abc import Sequence

from ..errors import InputError

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")

# single tokens rewritten as in PTB-tokenised data
_TOKEN_REWRITES = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-",
                   "}": "-rcb-", "[UNK]": "UNK", "&": "&amp;", "<": "&lt;", ">": "&gt;"}


def _is_number(token: str) -> bool:
    # digits and commas only (as in the official helper, which also accepts "," alone)
    return all(ch.isdigit() or ch == "," for ch in token)


def _is_punctuation(text: str) -> bool:
    # the official code tests ``text in string.punctuation``: a substring test, kept for parity
    return text in string.punctuation


def _is_capital_letter(token: str) -> bool:
    return len(token) == 1 and token.isupper()


def fix_tokenization(text: str) -> str:
    """Re-tokenise whitespace-separated text the way the Gigaword references are tokenised.

    Rules, applied left to right over the tokens: brackets and ``& < >`` to their PTB names;
    double quotes alternate between ``\\`\\``` and ``''``; ``n ' t`` -> ``n't``; ``' s``/``' d``/
    ``' ll`` -> ``'s``/``'d``/``'ll``; other single quotes alternate between ``\\``` and ``'``;
    ``. . .`` -> ``...``; ``3 , 000`` -> ``3,000``; ``3 . 03`` -> ``3.03``; ``U . N .`` ->
    ``U.N.``; ``- -`` -> ``--``; ``a - b`` -> ``a-b``. This follows OFA's
    ``fix_tokenization`` rule for rule, quirks included (an acronym's last period is emitted
    twice; the acronym and ``[UNK]`` rules never fire on the lowercased hypotheses).
    """
    tokens = text.split()
    out: list[str] = []
    in_double_quote = in_single_quote = False
    glue_next = False  # the previous token ended in a hyphen that joins the next word
    n = len(tokens)
    i = 0
    while i < n:
        tok = tokens[i]
        nxt = tokens[i + 1] if i + 1 < n else None
        after = tokens[i + 2] if i + 2 < n else None
        hyphen_joins = False
        step = 1
        if tok in _TOKEN_REWRITES:
            out.append(_TOKEN_REWRITES[tok])
        elif tok == '"':
            out.append("''" if in_double_quote else "``")
            in_double_quote = not in_double_quote
        elif tok == "'" and out and out[-1].endswith("n") and nxt == "t":
            out[-1] = out[-1][:-1]
            out.append("n't")
            step = 2
        elif tok == "'" and nxt in ("s", "d", "ll"):
            out.append("'" + nxt)
            step = 2
        elif tok == "'":
            out.append("'" if in_single_quote else "`")
            in_single_quote = not in_single_quote
        elif tok == "." and nxt == "." and after == ".":
            out.append("...")
            step = 3
        elif tok == "," and out and _is_number(out[-1]) and nxt is not None and _is_number(nxt):
            out[-1] += "," + nxt
            step = 2
        elif tok == "." and out and out[-1].isdigit() and nxt is not None and nxt.isdigit():
            out[-1] += "." + nxt
            step = 2
        elif (tok == "." and out and _is_capital_letter(out[-1]) and nxt is not None
              and _is_capital_letter(nxt) and after == "."):
            end = i + 3  # extend over further "X ." pairs
            while end + 2 < n and _is_capital_letter(tokens[end + 1]) and tokens[end + 2] == ".":
                end += 2
            out[-1] += "".join(tokens[i:end])
            step = 2  # not ``end - i``: the official code resumes at the acronym's last "."
        elif tok == "-":
            if nxt == "-":
                out.append("--")
                step = 2
            elif nxt is None or i == 0:
                out.append("-")
            elif not _is_punctuation(out[-1]) and not _is_punctuation(nxt[0]):
                out[-1] += "-"
                hyphen_joins = True
            else:
                out.append("-")
        elif glue_next and out and not _is_punctuation(tok[0]):
            out[-1] += tok
        else:
            out.append(tok)
        glue_next = hyphen_joins
        i += step
    return " ".join(out)


def gigaword_postprocess(text: str) -> str:
    """A generated summary as OFA's Gigaword evaluation scores it: lowercased and stripped,
    ``fix_tokenization``, then every ``1`` written as ``#`` (only ``1``: that is what the
    official evaluation replaces; the references already use ``#`` for all digits)."""
    if not isinstance(text, str):
        raise InputError(f"a summary must be a string, got {type(text).__name__}")
    return fix_tokenization(text.lower().strip()).replace("1", "#")


def rouge_scores(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measures in [0, 1] (keys ``rouge1``, ``rouge2``, ``rougeL``).

    Scored with ``rouge_score.RougeScorer`` and the Porter stemmer, as OFA does; one reference
    per prediction. Apply ``gigaword_postprocess`` to Gigaword predictions first. OFA's released
    script reports the bootstrap aggregate's mid value, which estimates this same mean.
    """
    from rouge_score.rouge_scorer import RougeScorer

    if isinstance(references, str) or isinstance(predictions, str):
        raise InputError("predictions and references must be lists of strings")
    if len(predictions) != len(references):
        raise InputError(f"{len(predictions)} predictions for {len(references)} references")
    if not predictions:
        raise InputError("nothing to score")
    for what, texts in (("prediction", predictions), ("reference", references)):
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InputError(f"{what} {i} must be a string, got {type(t).__name__}")
    scorer = RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for pred, ref in zip(predictions, references, strict=True):
        for name, score in scorer.score(ref, pred).items():
            totals[name] += score.fmeasure
    return {name: total / len(predictions) for name, total in totals.items()}
