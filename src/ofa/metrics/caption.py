"""Caption metrics with the scorers of the official COCO caption evaluation (pycocoevalcap).

Metric groups (the ``metrics`` argument) and the keys they produce:

========  ======================  ============================================
group     keys                    needs
========  ======================  ============================================
bleu      bleu1 bleu2 bleu3 bleu4 -
meteor    meteor                  Java
rouge_l   rouge_l                 -
cider     cider (CIDEr-D)         -
spice     spice                   Java + Stanford CoreNLP 3.6.0 jars
========  ======================  ============================================

``caption_scores`` keeps the fast default (BLEU and CIDEr, what training validation needs);
``caption_report`` computes everything it can and says why the rest was skipped, so a missing
Java or jar never crashes an evaluation.

Tokenisation: the official evaluation runs the Stanford PTB tokenizer (Java) over candidates
and references and drops punctuation tokens. ``tokenizer="auto"`` does that when Java works and
otherwise falls back to a pure-Python approximation (lowercase, punctuation removed), noting
the fallback in the report because scores can then differ slightly from the official ones.
"""

from __future__ import annotations

import contextlib
import functools
import io
import shutil
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..tasks.text import pre_caption, strip_punctuation

CAPTION_METRICS = ("bleu", "meteor", "rouge_l", "cider", "spice")
FAST_CAPTION_METRICS = ("bleu", "cider")
TOKENIZERS = ("auto", "ptb", "simple")

# tokens the official evaluation drops after PTB tokenisation (it lowercases first, so the
# bracket names never match and "-lrb-" etc. stay; kept for parity)
_PTB_PUNCTUATION = frozenset({"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?",
                              "!", ",", ":", "-", "--", "...", ";"})


@dataclass(frozen=True)
class CaptionReport:
    """What ``caption_report`` computed: ``scores`` (metric key -> value), ``skipped``
    (metric group -> why it was not computed), the ``tokenizer`` used ("ptb" or "simple") and
    ``notes`` on anything that makes the scores differ from the official evaluation."""

    scores: dict[str, float]
    skipped: dict[str, str] = field(default_factory=dict)
    tokenizer: str = "ptb"
    notes: tuple[str, ...] = ()


# ---------------------------------------------------------------- environment checks


@functools.lru_cache(maxsize=8)
def _java_runs(java: str) -> str | None:
    try:
        done = subprocess.run([java, "-version"], capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        return f"needs Java, and `{java} -version` failed ({e})"
    if done.returncode != 0:
        return f"needs Java, and `{java} -version` exited with status {done.returncode}"
    return None


def java_problem() -> str | None:
    """Why Java cannot be used here ("needs Java, and ..."), or None when ``java`` is on PATH
    and starts."""
    java = shutil.which("java")
    if java is None:
        return "needs Java, and no `java` is on PATH"
    return _java_runs(java)


def _spice_jars() -> list[Path]:
    """The Stanford CoreNLP jars SPICE needs (pycocoevalcap downloads them on first use)."""
    from pycocoevalcap.spice import get_stanford_models as models

    lib = Path(models.SPICEDIR) / models.SPICELIB
    return [lib / f"{models.JAR}.jar", lib / f"{models.JAR}-models.jar"]


def _spice_problem() -> str | None:
    missing = [p.name for p in _spice_jars() if not p.is_file()]
    if missing:
        return (f"needs the Stanford CoreNLP jars {', '.join(missing)} in "
                f"{_spice_jars()[0].parent} (pycocoevalcap downloads them on first use; not "
                "done here because it would need the network)")
    return java_problem()


def _check_metrics(metrics: Iterable[str]) -> tuple[str, ...]:
    if isinstance(metrics, str):
        metrics = (metrics,)
    chosen = tuple(dict.fromkeys(metrics))
    unknown = [m for m in chosen if m not in CAPTION_METRICS]
    if unknown:
        raise InputError(f"unknown caption metrics {unknown}; choose from {list(CAPTION_METRICS)}")
    if not chosen:
        raise InputError("no caption metrics asked for")
    return chosen


def caption_metrics_unavailable(metrics: Iterable[str] = CAPTION_METRICS) -> dict[str, str]:
    """For each metric group in ``metrics`` that cannot be computed here, the reason."""
    problems: dict[str, str] = {}
    for m in _check_metrics(metrics):
        problem = java_problem() if m == "meteor" else _spice_problem() if m == "spice" else None
        if problem:
            problems[m] = problem
    return problems


# ---------------------------------------------------------------- tokenisation


def _simple_tokens(text: str) -> str:
    # approximates the PTB tokenizer on plain lowercase text: same words, no punctuation
    return " ".join(strip_punctuation(pre_caption(text)).split())


def ptb_tokenize(texts: Sequence[str]) -> list[str]:
    """Texts tokenised as the official COCO evaluation does: the Stanford PTB tokenizer
    (``-preserveLines -lowerCase``, the jar shipped with pycocoevalcap), punctuation tokens
    dropped, tokens joined by single spaces. Needs Java.

    The text goes through stdin, so nothing is written into the (possibly read-only)
    pycocoevalcap folder; any whitespace run, line breaks included, becomes one space first so
    that one text stays one line. Tokens are split on " " as pycocoevalcap does: the
    tokenizer joins the parts of a fraction or a phone number with a non-breaking space, and
    they stay one token.
    """
    import pycocoevalcap.tokenizer.ptbtokenizer as ptb

    problem = java_problem()
    if problem:
        raise InputError(f"the PTB tokenizer {problem}")
    if not texts:
        return []
    jar = Path(ptb.__file__).with_name(ptb.STANFORD_CORENLP_3_4_1_JAR)
    lines = "".join(" ".join(t.split()) + "\n" for t in texts)
    done = subprocess.run(
        ["java", "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer",
         "-preserveLines", "-lowerCase", "-encoding", "utf-8"],
        input=lines.encode("utf-8"), capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError("the PTB tokenizer failed: "
                           + done.stderr.decode("utf-8", "replace").strip()[-500:])
    out = done.stdout.decode("utf-8").split("\n")  # one line per text, each ended by "\n"
    if len(out) != len(texts) + 1 or out[-1]:
        raise RuntimeError(f"the PTB tokenizer returned {len(out) - 1} lines for {len(texts)} "
                           "texts")
    return [" ".join(w for w in line.rstrip().split(" ") if w not in _PTB_PUNCTUATION)
            for line in out[:-1]]


def _tokenized(predictions: Sequence[str], references: Sequence[Sequence[str]], use_ptb: bool
               ) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    """``gts`` and ``res`` in the form the pycocoevalcap scorers take."""
    flat = list(predictions) + [r for refs in references for r in refs]
    tokens = ptb_tokenize(flat) if use_ptb else [_simple_tokens(t) for t in flat]
    # an empty candidate stays empty, as in the official evaluation (it changes BLEU and METEOR)
    res = {i: [tokens[i]] for i in range(len(predictions))}
    gts: dict[int, list[str]] = {}
    at = len(predictions)
    for i, refs in enumerate(references):
        gts[i] = tokens[at:at + len(refs)]
        at += len(refs)
    return gts, res


# ---------------------------------------------------------------- scorers


def _bleu(gts, res) -> dict[str, float]:
    from pycocoevalcap.bleu.bleu import Bleu

    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    return {f"bleu{n}": float(b) for n, b in enumerate(bleu, 1)}


def _meteor(gts, res) -> dict[str, float]:
    """METEOR 1.5 through its ``-stdio`` protocol, driven as pycocoevalcap's wrapper does it
    (same jar and options: ``-l en -norm``). Own driver so that a failing Java process is always
    killed (the wrapper can deadlock in its destructor after an error)."""
    import pycocoevalcap.meteor.meteor as wrapper

    jar = Path(wrapper.__file__).with_name(wrapper.METEOR_JAR)
    proc = subprocess.Popen(["java", "-jar", "-Xmx2G", jar.name, "-", "-", "-stdio",
                             "-l", "en", "-norm"], cwd=jar.parent, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdin is not None and proc.stdout is not None

    def send(line: str) -> None:
        proc.stdin.write((line + "\n").encode("utf-8"))
        proc.stdin.flush()

    def receive() -> str:
        return proc.stdout.readline().decode("utf-8").strip()

    try:
        stats = []
        for i in gts:  # one line of sufficient statistics per caption ...
            candidate = res[i][0].replace("|||", "").replace("  ", " ")
            send(" ||| ".join(["SCORE", *gts[i], candidate]))
            stats.append(receive())
        send(" ||| ".join(["EVAL", *stats]))  # ... then per-caption scores and the corpus one
        for _ in stats:
            receive()
        score = float(receive())
    finally:
        proc.kill()
        proc.wait()
    return {"meteor": score}


def _rouge_l(gts, res) -> dict[str, float]:
    from pycocoevalcap.rouge.rouge import Rouge

    score, _ = Rouge().compute_score(gts, res)
    return {"rouge_l": float(score)}


def _cider(gts, res) -> dict[str, float]:
    from pycocoevalcap.cider.cider import Cider

    score, _ = Cider().compute_score(gts, res)
    return {"cider": float(score)}


def _spice(gts, res) -> dict[str, float]:
    from pycocoevalcap.spice.spice import Spice

    score, _ = Spice().compute_score(gts, res)
    return {"spice": float(score)}


_SCORERS: dict[str, Callable[..., dict[str, float]]] = {
    "bleu": _bleu, "meteor": _meteor, "rouge_l": _rouge_l, "cider": _cider, "spice": _spice}
_JAVA_SCORERS = ("meteor", "spice")  # their failures are reported, not raised


def _check_inputs(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if len(predictions) != len(references):
        raise InputError(f"{len(predictions)} predictions for {len(references)} references")
    if not predictions:
        raise InputError("no captions to score")
    for i, (p, refs) in enumerate(zip(predictions, references, strict=True)):
        if not isinstance(p, str):
            raise InputError(f"prediction {i} must be a string, got {type(p).__name__}")
        if isinstance(refs, str) or not refs:
            raise InputError(f"references of caption {i} must be a non-empty list of strings")
        if not all(isinstance(r, str) for r in refs):
            raise InputError(f"references of caption {i} must all be strings")


def caption_report(predictions: Sequence[str], references: Sequence[Sequence[str]], *,
                   metrics: Iterable[str] = CAPTION_METRICS, tokenizer: str = "auto"
                   ) -> CaptionReport:
    """Corpus caption metrics of ``predictions`` against lists of reference captions.

    ``metrics``: groups from ``CAPTION_METRICS`` (default: all). Those that cannot run here
    (no Java, no SPICE jars) or whose Java process fails land in ``skipped`` with the reason.
    ``tokenizer``: "ptb" (official; needs Java), "simple" (pure Python) or "auto" (PTB when
    Java works, else simple with a note).
    """
    chosen = _check_metrics(metrics)
    if tokenizer not in TOKENIZERS:
        raise InputError(f"unknown tokenizer {tokenizer!r}; choose from {list(TOKENIZERS)}")
    _check_inputs(predictions, references)

    notes: list[str] = []
    java = None if tokenizer == "simple" else java_problem()
    if tokenizer == "ptb" and java:
        raise InputError(f"tokenizer='ptb' {java}; use tokenizer='auto' or 'simple'")
    use_ptb = tokenizer == "ptb" or (tokenizer == "auto" and java is None)
    if tokenizer == "auto" and not use_ptb:
        notes.append(f"simple tokenisation instead of the official PTB tokenizer, which {java}; "
                     "scores can differ slightly from the official evaluation")

    skipped = caption_metrics_unavailable(chosen)
    gts, res = _tokenized(predictions, references, use_ptb)
    scores: dict[str, float] = {}
    for m in chosen:
        if m in skipped:
            continue
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the scorers print progress
                scores.update(_SCORERS[m](gts, res))
        except (OSError, ValueError, subprocess.SubprocessError) as e:
            if m not in _JAVA_SCORERS:
                raise
            skipped[m] = f"its Java process failed: {type(e).__name__}: {e}"
    return CaptionReport(scores=scores, skipped=skipped,
                         tokenizer="ptb" if use_ptb else "simple", notes=tuple(notes))


def caption_scores(predictions: Sequence[str], references: Sequence[Sequence[str]], *,
                   metrics: Iterable[str] | None = None, full: bool = False,
                   tokenizer: str = "auto") -> dict[str, float]:
    """Caption metrics as a plain dict. By default BLEU-1..4 and CIDEr-D, the fast set that
    training validation uses; ``full=True`` is shorthand for every metric
    (``metrics=CAPTION_METRICS``). Metrics that cannot be computed here are left out; use
    ``caption_report`` (or ``caption_metrics_unavailable``) to learn why."""
    if full and metrics is not None:
        raise InputError("give either metrics=... or full=True, not both")
    if metrics is None:
        metrics = CAPTION_METRICS if full else FAST_CAPTION_METRICS
    return caption_report(predictions, references, metrics=metrics, tokenizer=tokenizer).scores
