"""Prompts, text normalisation and official decoding settings of every task."""

import pytest
import torch

from ofa.errors import InputError
from ofa.generate import Hypothesis
from ofa.model import OFAConfig
from ofa.tasks import (
    CaptionTask,
    ClassificationTask,
    EntailmentTask,
    GroundingTask,
    InstructionTask,
    SummarizationTask,
    VQATask,
    pre_caption,
    pre_question,
    strip_punctuation,
)
from ofa.tokenizer import OFATokenizer

BASE = OFAConfig.preset("base")


@pytest.fixture(scope="module")
def tok(bpe_dir):
    return OFATokenizer.from_dir(bpe_dir)


@pytest.mark.parametrize("raw,expected", [
    ("What color is the cat", "what color is the cat?"),
    (",Is it red-or/blue?", "is it red or blue?"),
    ("HOW   many \t dogs?  ", "how many dogs?"),
    ("  ,odd", ",odd?"),  # official: lstrip of punctuation runs before the space strip
])
def test_pre_question(raw, expected):
    assert pre_question(raw) == expected


def test_pre_caption_and_punctuation():
    assert pre_caption("#The dog -- on the LEFT/side.") == "the dog on the left side."
    assert pre_caption("one two three four", max_words=2) == "one two"
    # OFA's pre_caption turns the <person> placeholder of some datasets into a word; its
    # pre_question does not
    assert pre_caption("<person> riding a horse") == "person riding a horse"
    assert pre_question("is <person> riding?") == "is <person> riding?"
    assert strip_punctuation(" a dog, sitting on a mat. ") == "a dog sitting on a mat"


def test_caption_prompt_and_settings(tok):
    ex = CaptionTask().prepare(tok, "img")
    assert ex.source == [0, 99, 473, 5, 2274, 6190, 116, 2] and ex.prefix == []
    cfg = CaptionTask().generation_config(BASE)
    assert (cfg.beam_size, cfg.max_len_a, cfg.max_len_b, cfg.min_len, cfg.no_repeat_ngram_size,
            cfg.lenpen, cfg.normalize_scores) == (5, 0, 16, 1, 3, 1.0, True)
    huge = CaptionTask().generation_config(OFAConfig.preset("huge"))
    assert (huge.beam_size, huge.lenpen, huge.temperature) == (10, 0.98, 0.98)


def test_vqa_prompt_prefix_objects_and_settings(tok):
    ex = VQATask().prepare(tok, "img", question="What color is the car",
                           objects=["car", "road"])
    # reference 3.1 vector, no BOS/EOS: the forced decoder prefix (prompt_type prev_output)
    assert ex.prefix == [99, 3195, 16, 5, 512, 116, 7626, 35, 512, 921]
    assert ex.source == [0, *ex.prefix, 2]
    ft = VQATask().generation_config(BASE)
    assert (ft.beam_size, ft.normalize_scores, ft.no_repeat_ngram_size, ft.zero_shot) == (
        5, False, 0, False)
    zs_task = VQATask(zero_shot=True)
    zs = zs_task.generation_config(BASE)
    assert (zs.beam_size, zs.normalize_scores, zs.zero_shot) == (20, False, True)
    assert zs_task.prepare(tok, "img", question="why").prefix == []
    with pytest.raises(InputError, match="empty"):
        VQATask().prepare(tok, "img", question="")
    with pytest.raises(InputError, match="objects"):
        VQATask().prepare(tok, "img", question="why", objects="car road")


def test_vqa_answer_strips_prefix(tok):
    task = VQATask()
    ex = task.prepare(tok, "img", question="is it red")
    answer = tok.encode(" yes", add_bos_eos=False)
    hyp = Hypothesis(torch.tensor([*ex.prefix, *answer, 2]), -1.0, torch.zeros(1))
    assert task.result(tok, ex, hyp) == {"question": "is it red?", "answer": "yes"}


def test_grounding_prompt_box_and_settings(tok):
    task = GroundingTask()
    ex = task.prepare(tok, "img", text="A man")
    assert ex.source == [0, 61, 976, 473, 5, 2788, 22, 10, 313, 22, 6190, 116, 2]
    cfg = task.generation_config(BASE)
    assert (cfg.beam_size, cfg.max_len_b, cfg.min_len, cfg.no_repeat_ngram_size,
            cfg.constraint_range) == (5, 4, 4, 3, None)
    assert GroundingTask(bins_only=True).generation_config(BASE).constraint_range == (
        58457, 59457)
    ex.image_size = (1024, 256)  # squashed to 512x512, boxes scaled back per axis
    hyp = Hypothesis(torch.tensor([58457, 58457 + 999, 58457 + 999, 58457 + 500, 2]), 0.0,
                     torch.zeros(5))
    box = task.result(tok, ex, hyp)["box"]
    assert box == pytest.approx([0.0, 256.0, 1024.0, 500 / 999 * 256], abs=0.01)
    not_bins = Hypothesis(torch.tensor([58457, 3, 58458, 58459, 2]), 0.0, torch.zeros(5))
    assert task.result(tok, ex, not_bins)["box"] is None


def test_entailment_prompts(tok):
    task = EntailmentTask()
    plain = task.prepare(tok, "img", hypothesis="Two dogs")
    assert tok.decode(plain.source) == ' does the image describe " two dogs "?'
    with_premise = task.prepare(tok, "img", hypothesis="two dogs", premise="Animals play")
    assert tok.decode(with_premise.source) == (
        ' can image and text1 " animals play " imply text2 " two dogs "?')
    assert with_premise.prefix == with_premise.source[1:-1]
    r = task.result_from_scores(plain, {"yes": -3.0, "no": -1.0, "maybe": -2.0})
    assert (r["answer"], r["label"]) == ("no", "contradiction")
    # a tie goes to the first in OFA's candidate order no, yes, maybe (its argmax)
    for scores in ({"yes": -1.0, "no": -1.0, "maybe": -1.0}, {"maybe": -1.0, "yes": -1.0,
                                                              "no": -2.0}):
        expected = "no" if scores["no"] == -1.0 else "yes"
        assert task.result_from_scores(plain, scores)["answer"] == expected


def test_classification_summarization_instruction(tok):
    c = ClassificationTask()
    assert c.preprocess.mean == (0.485, 0.456, 0.406) and c.prepare(tok, "img").prefix == []
    s = SummarizationTask()
    ex = s.prepare(tok, "t", text="Police  ARRESTED five people")
    assert tok.decode(ex.source) == ' what is the summary of article " police arrested five ' \
                                    'people "?'
    cfg = s.generation_config(BASE)
    assert (cfg.beam_size, cfg.max_len_b, cfg.lenpen, cfg.no_repeat_ngram_size) == (
        6, 32, 0.7, 3)
    assert s.image_size is None
    i = InstructionTask().prepare(tok, "img", prompt="what is this?")
    assert i.source == tok.encode(" what is this?")
