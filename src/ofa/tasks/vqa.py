"""Visual question answering.

Fine-tuned checkpoints (``vqa_*_best.pt``) take the question as a forced decoder prefix
(``prompt_type=prev_output``), optionally VinVL object tags, and decode unnormalised beam
search constrained by a trie of allowed answers, or score every candidate answer. Pre-trained
checkpoints answer zero-shot: beam 20, unnormalised, no prefix and no trie.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import InputError
from ..generate import GenerationConfig, Hypothesis
from ..model import OFAConfig
from ..preprocess import PreprocessCfg
from ..tokenizer import OFATokenizer
from .base import Example, Task, answer_tokens
from .text import pre_question, require_text

MODES = ("beam", "all", "open")
MAX_OBJECTS = 30


def source_text(question: str, objects: Sequence[str] | None = None) -> str:
    """``" {question}"`` plus ``" object: {o1 o2 ...}"`` (at most 30 VinVL tags)."""
    text = " " + pre_question(require_text(question, "question"))
    if objects:
        tags = [o.strip() for o in objects if o and o.strip()][:MAX_OBJECTS]
        text += " object: " + " ".join(tags)
    return text


class VQATask(Task):
    name = "vqa"
    summary = "Answer a question about an image"
    preprocess = PreprocessCfg(480)
    primary_metric = "acc"
    result_key = "answer"
    record_fields = ("image", "question")
    default_model = "ofa-base-vqa"
    demo = True

    def __init__(self, zero_shot: bool = False) -> None:
        self.zero_shot = zero_shot

    def generation_config(self, model_config: OFAConfig) -> GenerationConfig:
        if self.zero_shot:
            # evaluate_vqa_zeroshot.sh keeps fairseq's default max_len_b (200); answers end
            # within a few tokens because unnormalised scores only fall with length
            return GenerationConfig(beam_size=20, min_len=1, normalize_scores=False,
                                    zero_shot=True)
        return GenerationConfig(beam_size=5, min_len=1, normalize_scores=False)

    def prepare(self, tokenizer: OFATokenizer, label: str, question: str = "",
                objects: Sequence[str] | None = None) -> Example:
        if objects is not None and (isinstance(objects, str) or not all(
                isinstance(o, str) for o in objects)):
            raise InputError("objects must be a list of tag strings")
        text = source_text(question, objects)
        source = tokenizer.encode(text)
        # prev_output prompt: the source without BOS/EOS is forced after the decoder's BOS
        prefix = [] if self.zero_shot else source[1:-1]
        return Example(label, source, prefix=prefix, info={"question": text.strip()})

    def result(self, tokenizer: OFATokenizer, example: Example, hyp: Hypothesis) -> dict:
        return {"question": example.info["question"],
                "answer": tokenizer.decode(answer_tokens(example, hyp)).strip()}
