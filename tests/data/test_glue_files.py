"""GLUE's files as distributed, OFA's glue_data files and bad files, read into glue records;
`ofa eval glue` finds them; ShapesWorld's GLUE-format task."""

from pathlib import Path

import pytest

from ofa.data.benchmarks import read_eval_data
from ofa.data.glue import detect_dataset, find_glue_file, read_glue_tsv
from ofa.data.records import validate_record
from ofa.data.shapes import ShapesWorld
from ofa.data.shapes_glue import glue_rows, statement_kind, write_shapes_glue
from ofa.errors import InputError

# GLUE's layouts (a header, except CoLA's train/dev), two rows each
GLUE_FILES = {
    "SST-2/dev.tsv": "sentence\tlabel\nit 's a charming journey . \t1\nunfunny\t0\n",
    "CoLA/dev.tsv": "gj04\t1\t\tThe book was read.\ngj04\t0\t*\tBook the read was.\n",
    "MRPC/dev.tsv": "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
                    "1\t1355540\t1355592\tHe left.\tHe went away.\n0\t1\t2\tA b.\tC d.\n",
    "QQP/dev.tsv": "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
                   "201359\t303345\t303346\tWhy?\tHow come?\t1\n7\t8\t9\tWho?\tWhen?\t0\n",
    "QNLI/dev.tsv": "index\tquestion\tsentence\tlabel\n"
                    "0\tWho wrote it?\tTom wrote it.\tentailment\n1\tQ?\tS.\tnot_entailment\n",
    "RTE/dev.tsv": "index\tsentence1\tsentence2\tlabel\n"
                   "0\tA dog runs.\tAn animal runs.\tentailment\n1\tA.\tB.\tnot_entailment\n",
    "MNLI/dev_matched.tsv": "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\t"
                            "sentence2_binary_parse\tsentence1_parse\tsentence2_parse\t"
                            "sentence1\tsentence2\tlabel1\tgold_label\n"
                            "0\t1\t1e\tgov\t(a)\t(b)\t(A)\t(B)\tA dog runs.\tA cat sleeps.\t"
                            "neutral\tneutral\n"
                            "1\t2\t2e\tgov\t(a)\t(b)\t(A)\t(B)\tA.\tB.\tcontradiction\t"
                            "contradiction\n",
}
EXPECTED = {  # (dataset, first record's texts, labels, first id)
    "SST-2/dev.tsv": ("sst2", ["it 's a charming journey ."], ["positive", "negative"], "dev-2"),
    "CoLA/dev.tsv": ("cola", ["The book was read."], ["yes", "no"], "dev-1"),
    "MRPC/dev.tsv": ("mrpc", ["He left.", "He went away."], ["yes", "no"], "dev-2"),
    "QQP/dev.tsv": ("qqp", ["Why?", "How come?"], ["yes", "no"], "201359"),
    "QNLI/dev.tsv": ("qnli", ["Who wrote it?", "Tom wrote it."], ["yes", "no"], "0"),
    "RTE/dev.tsv": ("rte", ["A dog runs.", "An animal runs."], ["yes", "no"], "0"),
    "MNLI/dev_matched.tsv": ("mnli", ["A dog runs.", "A cat sleeps."], ["maybe", "no"], "0"),
}


def _write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", list(GLUE_FILES))
def test_glue_layouts_as_distributed(name, tmp_path):
    records = read_glue_tsv(_write(tmp_path, name, GLUE_FILES[name]))
    dataset, texts, labels, first_id = EXPECTED[name]
    assert records.dataset.name == dataset and len(records) == 2
    first = records[0]
    assert [first["text"], *([first["text2"]] if "text2" in first else [])] == texts
    assert [r["label"] for r in records] == labels and first["id"] == first_id
    for r in records:
        validate_record(r, name)


def test_test_files_have_no_labels(tmp_path):
    path = _write(tmp_path, "RTE/test.tsv", "index\tsentence1\tsentence2\n0\tA.\tB.\n")
    records = read_glue_tsv(path)
    assert not records.labelled
    assert records[0] == {"task": "glue", "dataset": "rte", "id": "0", "text": "A.",
                          "text2": "B."}
    cola = _write(tmp_path, "CoLA/test.tsv", "index\tsentence\n0\tIt ran.\n")
    assert read_glue_tsv(cola)[0] == {"task": "glue", "dataset": "cola", "id": "0",
                                      "text": "It ran."}


def test_ofa_glue_data_files_and_selected_cols(tmp_path):
    mnli = _write(tmp_path, "mnli_train.tsv", "A dog runs.\tA cat sleeps.\t0\nA.\tB.\t2\n")
    records = read_glue_tsv(mnli)  # OFA's glue_data layout, told by the file name
    assert [r["label"] for r in records] == ["maybe", "no"]  # OFA numbers MNLI 0 maybe 2 no
    cola = _write(tmp_path, "cola_dev.tsv", "7\tIt ran.\t1\n")
    assert read_glue_tsv(cola, selected_cols=[1, 2])[0]["label"] == "yes"
    plain = _write(tmp_path, "mine.tsv", "good film\t1\n")
    assert read_glue_tsv(plain, "sst2")[0]["label"] == "positive"


@pytest.mark.parametrize("name,text,message", [
    ("mine.tsv", "a\tb\t1\n", "cannot tell which GLUE dataset"),
    ("SST-2/dev.tsv", "sentence\tlabel\ngood\tmaybe\n", r"dev.tsv:2: SST-2 label must be"),
    ("RTE/dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA.\n", "dev.tsv:2: found 2 tab"),
    ("QQP/dev.tsv", "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n1\t2\t3\t \tq\t1\n",
     "dev.tsv:2: an empty text column"),
    ("SST-2/dev.tsv", "sentence\tlabel\n", "no SST-2 rows"),
])
def test_bad_files_say_what_is_wrong(name, text, message, tmp_path):
    with pytest.raises(InputError, match=message):
        read_glue_tsv(_write(tmp_path, name, text))


def test_bad_selected_cols_and_missing_file(tmp_path):
    path = _write(tmp_path, "sst2_dev.tsv", "good\t1\n")
    with pytest.raises(InputError, match="pick 1 text column"):
        read_glue_tsv(path, selected_cols=[0, 1, 2])
    with pytest.raises(InputError, match="column numbers"):
        read_glue_tsv(path, selected_cols="a,b")
    with pytest.raises(InputError, match="GLUE file not found"):
        read_glue_tsv(tmp_path / "nope.tsv")
    mrpc = _write(tmp_path, "pairs.tsv", GLUE_FILES["MRPC/dev.tsv"])
    with pytest.raises(InputError, match="its header is MRPC's, not RTE's"):
        read_glue_tsv(mrpc, "rte")


def test_detection_and_split_files(tmp_path):
    assert detect_dataset(Path("glue_data/SST-2/train.tsv")) == "sst2"
    assert detect_dataset(Path("qnli_train.tsv")) == "qnli"
    assert detect_dataset(Path("x.tsv"), ["index", "sentence1", "sentence2", "label"]) == "rte"
    assert detect_dataset(Path("x.tsv")) is None
    folder = tmp_path / "MNLI"
    for split in ("dev_matched", "dev_mismatched"):
        _write(folder, f"{split}.tsv", GLUE_FILES["MNLI/dev_matched.tsv"])
    assert find_glue_file(folder, "mnli", None).name == "dev_matched.tsv"
    assert find_glue_file(folder, "mnli", "dev-mm").name == "dev_mismatched.tsv"
    with pytest.raises(InputError, match="no test_matched.tsv here"):
        find_glue_file(folder, "mnli", "test")


def test_eval_reads_glue_by_file_folder_and_alias(tmp_path):
    _write(tmp_path, "SST-2/dev.tsv", GLUE_FILES["SST-2/dev.tsv"])
    data = read_eval_data("glue", tmp_path / "SST-2" / "dev.tsv")
    assert data.meta["dataset"] == "sst2" and len(data.records) == 2
    assert read_eval_data("sst2", tmp_path / "SST-2").meta["file"].endswith("dev.tsv")
    mnli = _write(tmp_path, "MNLI/dev_mismatched.tsv", GLUE_FILES["MNLI/dev_matched.tsv"])
    assert read_eval_data("mnli-mm", mnli.parent).meta["file"] == str(mnli)
    with pytest.raises(InputError, match="disagree"):
        read_eval_data("rte", tmp_path / "SST-2", glue_dataset="sst2")
    with pytest.raises(InputError, match="only applies to the glue task"):
        read_eval_data("caption", tmp_path / "SST-2", glue_dataset="sst2")


def test_shapes_glue_is_deterministic_balanced_and_readable(tmp_path):
    world = ShapesWorld(seed=0)
    assert glue_rows(world, "val", 3) == glue_rows(ShapesWorld(seed=0), "val", 3)
    rte, mrpc = glue_rows(world, "train", 0)
    assert sorted(t for *_, t in rte) == [False, True] == sorted(s for *_, s in mrpc)
    files = write_shapes_glue(tmp_path, {"train": 20, "val": 5})
    assert set(files) == {"RTE/train", "MRPC/train", "RTE/dev", "MRPC/dev",
                          "RTE/train_relations", "RTE/train_multi"}

    def rows(name: str) -> list[tuple[str, str, str]]:
        return [(r["text"], r["text2"], r["label"]) for r in read_glue_tsv(files[name])]

    def shapes(text: str) -> int:
        return text.count(",") + text.count(" and ") + 1

    train = rows("RTE/train")
    assert rows("RTE/train_relations") == [r for r in train if statement_kind(r[1]) == "relation"]
    assert rows("RTE/train_multi") == [r for r in train if shapes(r[0]) > 1
                                       and statement_kind(r[1]) != "count"]
    assert 0 < len(rows("RTE/train_relations")) < len(rows("RTE/train_multi")) < len(train)
    records = read_glue_tsv(files["MRPC/train"])
    assert records.dataset.name == "mrpc" and len(records) == 40
    labels = [r["label"] for r in read_glue_tsv(files["RTE/dev"])]
    assert labels.count("yes") == labels.count("no") == 5
    again = tmp_path / "again"
    write_shapes_glue(again, {"train": 20, "val": 5})
    assert (again / "RTE" / "train.tsv").read_bytes() == files["RTE/train"].read_bytes()


def test_shapes_glue_training_rows_oversample_the_hard_kinds():
    """Training statements lean to relations and changes inside the scene; dev and test keep
    the uniform mix their figures measure (and the rows they had before the weights)."""
    world = ShapesWorld(seed=0)

    def shapes(text: str) -> int:
        return text.count(",") + text.count(" and ") + 1

    def shares(split: str) -> tuple[float, float]:
        hyps, changes = [], []
        for i in range(300):
            rte, mrpc = glue_rows(world, split, i)
            hyps += [h for _, h, _ in rte]
            changes += [shapes(a) == shapes(b) for a, b, same in mrpc if not same]
        relation = sum(statement_kind(h) == "relation" for h in hyps) / len(hyps)
        return relation, sum(changes) / len(changes)

    train_relation, train_same_count = shares("train")
    val_relation, val_same_count = shares("val")
    assert train_relation > val_relation + 0.1
    assert train_same_count > val_same_count + 0.1  # fewer shapes dropped or added


@pytest.mark.parametrize("hypothesis, kind", [
    ("there is a red circle", "exist"), ("there is one shape", "count"),
    ("there are three shapes", "count"), ("the red circle is small", "size"),
    ("the red circle is left of the blue square", "relation"),
    ("the red circle is right of the blue square", "relation")])
def test_statement_kind(hypothesis, kind):
    assert statement_kind(hypothesis) == kind
