"""GLUE's official metrics on examples computed by hand."""

import math

import pytest

from ofa.errors import InputError
from ofa.metrics.glue import glue_metrics


def test_accuracy_f1_and_mcc_by_hand():
    refs = ["yes", "yes", "yes", "no", "no", "no", "no", "yes"]
    preds = ["yes", "yes", "no", "no", "yes", "no", "no", "yes"]
    # TP 3, FN 1, FP 1, TN 3
    m = glue_metrics(preds, refs, ("acc", "f1", "mcc"))
    assert m["acc"] == pytest.approx(6 / 8)
    assert m["f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert m["mcc"] == pytest.approx((3 * 3 - 1 * 1) / math.sqrt(4 * 4 * 4 * 4))


def test_f1_of_the_positive_label_and_degenerate_cases():
    # F1 is that of "yes" whatever else is predicted
    assert glue_metrics(["no", "no"], ["yes", "no"], ("f1",))["f1"] == 0.0
    assert glue_metrics(["yes"], ["yes"], ("f1", "acc")) == {"f1": 1.0, "acc": 1.0}
    # a constant prediction has no correlation
    assert glue_metrics(["yes"] * 3, ["yes", "no", "yes"], ("mcc",))["mcc"] == 0.0
    assert glue_metrics([], [], ("acc",)) == {}
    with pytest.raises(InputError, match="2 predictions for 1 references"):
        glue_metrics(["yes", "no"], ["yes"], ("acc",))
