"""One reader for answer and class lists: text lines or the official ans2label pickle."""

import pickle

import pytest

from ofa.data.answer_lists import read_answer_list, read_lines
from ofa.errors import InputError


def test_lines_and_ans2label_pickles_give_the_same_list(tmp_path):
    text = tmp_path / "answers.txt"
    text.write_text("yes\n\n no \nred\n", encoding="utf-8")
    pkl = tmp_path / "trainval_ans2label.pkl"
    pkl.write_bytes(pickle.dumps({"yes": 0, "no": 1, "red": 2}, protocol=2))
    assert read_answer_list(text) == read_answer_list(pkl) == ["yes", "no", "red"]
    assert read_lines(text, "classes") == ["yes", "no", "red"]


@pytest.mark.parametrize("content, match", [
    (b"", "is empty"), (b"\xff\xfe", "cannot read"), (None, "not found")])
def test_bad_lists_are_one_clear_error(tmp_path, content, match):
    path = tmp_path / "answers.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=match):
        read_answer_list(path)


def test_a_pickle_that_is_not_ans2label_is_refused(tmp_path):
    path = tmp_path / "bad.pkl"
    path.write_bytes(pickle.dumps(["yes", "no"]))
    with pytest.raises(InputError, match="ans2label"):
        read_answer_list(path)
