"""The glue task: OFA's prompt and label words per dataset (exact ids with the real BPE),
prompt_type src, the answer among the label words, records, scoring and training targets."""

import pytest

import ofa
from ofa.data.records import validate_record
from ofa.errors import InputError
from ofa.evaluate import score_predictions
from ofa.tasks import TASKS
from ofa.tasks.glue import DATASET_NAMES, GlueTask, clean_text, get_dataset
from ofa.tokenizer import OFATokenizer
from ofa.train.featurize import build_sample, candidate_tries

# (text, text2) -> source ids, for each dataset (OFA-Sys/OFA data/nlu_data/*_dataset.py)
PROMPTS = {
    "sst2": (("A gripping  Film", None),
             [0, 16, 5, 5702, 9, 2788, 22, 10, 30742, 822, 22, 1313, 50, 2430, 116, 2]),
    "cola": (("The book was read.", None),
             [0, 16, 5, 2788, 22, 5, 1040, 21, 1166, 4, 22, 25187, 45236, 4577, 116, 2]),
    "mrpc": (("He left.", "He went away."),
             [0, 473, 2788, 134, 22, 37, 314, 4, 22, 8, 2788, 176, 22, 37, 439, 409, 4, 22, 33,
              5, 276, 46264, 116, 2]),
    "qqp": (("Why is the sky blue?", "What makes the sky blue?"),
            [0, 16, 864, 22, 596, 16, 5, 6360, 2440, 116, 22, 8, 864, 22, 99, 817, 5, 6360,
             2440, 116, 22, 6305, 116, 2]),
    "qnli": (("Who wrote it?", "Tom wrote it."),
             [0, 473, 22, 23681, 875, 24, 4, 22, 5585, 5, 1948, 7, 864, 22, 54, 875, 24, 116,
              22, 116, 2]),
    "rte": (("A dog runs.", "An animal runs."),
            [0, 64, 2788, 134, 22, 10, 2335, 1237, 4, 22, 25696, 2788, 176, 22, 41, 3477, 1237,
             4, 22, 116, 2]),
    "mnli": (("A dog runs.", "A cat sleeps."),
             [0, 64, 2788, 134, 22, 10, 2335, 1237, 4, 22, 25696, 2788, 176, 22, 10, 4758, 36831,
              4, 22, 116, 2]),
}
# the label words in the official ans2label_dict order, and their ids
WORDS = {"sst2": (["negative", "positive"], [2430, 1313]), "mnli": (["maybe", "yes", "no"],
                                                                   [2085, 4420, 117])}


@pytest.fixture(scope="module")
def tok(bpe_dir):
    return OFATokenizer.from_dir(bpe_dir)


@pytest.mark.parametrize("name", DATASET_NAMES)
def test_prompt_ids_and_decoder_prefix(name, tok):
    (text, text2), ids = PROMPTS[name]
    ex = GlueTask(name).prepare(tok, "x", text=text, text2=text2)
    assert ex.source == ids
    assert ex.prefix == ids[1:]  # prompt_type src: the whole source, EOS included
    words = GlueTask(name).candidates()
    expected = WORDS.get(name, (["no", "yes"], [117, 4420]))
    assert words == expected[0]
    # every label word is one token, as the official datasets assert
    assert [tok.encode(" " + w, add_bos_eos=False) for w in words] == [[i] for i in expected[1]]


def test_texts_are_lowercased_and_cut_to_512_words():
    assert clean_text("  Hello \t  WORLD ") == "hello world"
    assert clean_text(" ".join(["w"] * 600)).count("w") == 512


def test_pairs_and_single_texts_are_checked(tok):
    with pytest.raises(InputError, match="MRPC compares two texts"):
        GlueTask("mrpc").prepare(tok, "x", text="a")
    with pytest.raises(InputError, match="SST-2 reads one text"):
        GlueTask("sst2").prepare(tok, "x", text="a", text2="b")
    with pytest.raises(InputError, match="text2 is empty"):
        GlueTask("rte").prepare(tok, "x", text="a", text2=" ")
    with pytest.raises(InputError, match="unknown GLUE dataset 'wnli'"):
        TASKS["glue"].configure(dataset="wnli")
    assert get_dataset("SST-2").name == "sst2" and get_dataset("mnli-mm").name == "mnli"


def test_answer_ties_go_to_the_first_official_word():
    task = GlueTask("mnli")
    r = task.result_from_scores(None, {"maybe": -1.0, "yes": -1.0, "no": -3.0})
    assert r == {"dataset": "mnli", "label": "maybe", "glue_label": "neutral"}
    assert task.one_line(r) == "maybe (neutral)"
    assert GlueTask("sst2").result_from_scores(None, {"negative": -2, "positive": -1})[
        "glue_label"] == "1"


def test_records_labels_and_targets(tokenizer):
    record = {"task": "glue", "id": "r", "dataset": "rte", "text": "a", "text2": "b",
              "label": "entailment"}
    validate_record(record, "r")
    assert TASKS["glue"].target_text(record) == (" yes", 1.0)
    for bad, match in (({"label": "maybe"}, "RTE label must be one of"),
                       ({"text2": None}, "text2"), ({"dataset": "wnli"}, "unknown GLUE")):
        with pytest.raises(InputError, match=match):
            validate_record({**record, **bad}, "r")
    sample = build_sample(record, tokenizer)
    source = GlueTask("rte").prepare(tokenizer, "r", text="a", text2="b").source
    # decoder: BOS + the whole source + the label word; loss on the word and EOS only
    assert sample.decoder_input == [*source, 4420]
    assert sample.target == [1] * (len(source) - 1) + [4420, 2]
    tries = candidate_tries(["glue"], tokenizer, vqa_answers=None, records=[record])
    assert sorted(tries["glue"].allowed([0])) == [117, 4420]


def test_scores_per_dataset_and_overall():
    recs = [{"task": "glue", "id": str(i), "dataset": d, "text": "t", "text2": "u",
             "label": lab} for i, (d, lab) in enumerate([("mrpc", "1"), ("mrpc", "0"),
                                                         ("mrpc", "yes"), ("rte", "entailment"),
                                                         ("rte", "not_entailment")])]
    preds = ["yes", "yes", None, "yes", "yes"]  # None: a failed input, counted as wrong
    m = score_predictions(recs, [{"prediction": p} for p in preds])
    assert m["glue/mrpc/acc"] == pytest.approx(1 / 3)
    assert m["glue/mrpc/f1"] == pytest.approx(0.5)  # TP 1, FP 1, FN 1
    assert m["glue/rte/acc"] == 0.5
    assert m["glue/acc"] == pytest.approx(2 / 5)
    assert m["glue/score"] == pytest.approx((1 / 3 + 0.5) / 2)  # each dataset's keep-best


def test_unlabelled_records_are_not_scored():
    recs = [{"task": "glue", "id": "0", "dataset": "sst2", "text": "t"}]
    assert TASKS["glue"].score(recs, ["positive"], False) == ({}, {})


def test_demo_model_scores_the_label_words():
    m = ofa.load("shapes-demo", device="cpu")
    out = m.run("glue", None, text=["a red circle", "a blue square"],
                text2="there is a red circle", dataset="rte")
    assert [r["dataset"] for r in out] == ["rte", "rte"]
    for r in out:
        assert set(r["scores"]) == {"no", "yes"} and r["label"] in ("no", "yes")
        assert r["glue_label"] in ("entailment", "not_entailment")
        assert r["score"] == max(r["scores"].values())
    with pytest.raises(InputError, match="takes no image"):
        m.run("glue", "x.png", text="a")
    typed = m.glue(["a red circle", "a blue square"], "there is a red circle", dataset="rte")
    assert [r["label"] for r in typed] == [r["label"] for r in out]


def test_cli_command_eval_and_shapes_data(tmp_path, capsys):
    from ofa import cli

    assert cli.main(["glue", "a red circle", "--text2", "there is a red circle", "--dataset",
                     "rte", "--model", "shapes-demo", "--device", "cpu"]) == 0
    text, answer = capsys.readouterr().out.strip().split("\t")
    assert text == "a red circle" and answer in ("yes (entailment)", "no (not_entailment)")
    assert cli.main(["data", "shapes-glue", str(tmp_path / "sg"), "--train", "0", "--val", "3",
                     "--test", "0"]) == 0
    dev = tmp_path / "sg" / "RTE" / "dev.tsv"
    assert cli.main(["eval", "glue", "--task", "rte", "--model", "shapes-demo", "--data",
                     str(dev), "--out", str(tmp_path / "ev"), "--device", "cpu",
                     "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "6 records (glue 6)" in out and "glue/rte/acc" in out and "glue/score" in out
    # the same file as `--tasks glue`, without a TASK
    assert cli.main(["eval", "--tasks", "glue", "--model", "shapes-demo", "--data", str(dev),
                     "--out", str(tmp_path / "ev2"), "--device", "cpu", "--no-progress"]) == 0
    assert cli.main(["eval", "glue", "--task", "wnli", "--model", "shapes-demo", "--data",
                     str(dev), "--out", str(tmp_path / "ev3")]) == 1
    assert "unknown GLUE dataset 'wnli'" in capsys.readouterr().err
