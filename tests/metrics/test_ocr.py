"""OCR line accuracy and normalised edit distance (the official OCR evaluation's)."""

import pytest

from ofa.metrics import normalize_ocr_text, ocr_scores
from ofa.tasks.text import join_chinese, split_cjk


def test_spaces_case_and_width_do_not_count():
    assert normalize_ocr_text("北京 欢迎你 ＯＦＡ２０２４") == "北京欢迎你ofa2024"
    assert ocr_scores(["北 京 欢迎你"], ["北京欢迎你"]) == {"acc": 1.0, "ned": 1.0}


def test_edit_distance_by_hand():
    # "abcd" vs "abed": 1 substitution / 4 -> 0.75; "" vs "": 1; "ab" vs "abc": 1 - 1/3
    scores = ocr_scores(["abcd", "", "ab"], ["abed", "", "abc"])
    assert scores["acc"] == pytest.approx(1 / 3)
    assert scores["ned"] == pytest.approx((0.75 + 1.0 + 2 / 3) / 3)


def test_lengths_must_match():
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        ocr_scores(["a", "b"], ["a"])


def test_chinese_decode_joined_and_split():
    assert join_chinese("图 片 上 的 cat dog 2024 ， 好") == "图片上的cat dog 2024，好"
    assert split_cjk("图片上的cat dog") == "图 片 上 的 cat dog"
    assert split_cjk("a small red square") == "a small red square"
