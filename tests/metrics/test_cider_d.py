"""CIDEr-D with fixed document frequencies (SCST's reward): pycocoevalcap's numbers when the
frequencies come from the scored references, batch-independent scores when they are fixed,
safe and reproducible frequency files, and `ofa data cider-df`."""

from __future__ import annotations

import base64
import gzip
import io
import json
import random

import numpy as np
import pytest
from PIL import Image
from pycocoevalcap.cider.cider_scorer import CiderScorer

from ofa import cli
from ofa.errors import InputError
from ofa.metrics.cider_d import DocumentFrequency, cider_d, reference_sets, scst_text

WORDS = "a the red blue green circle square triangle is left of right and small large".split()


def sentences(rng: random.Random, n: int) -> list[str]:
    return [" ".join(rng.choices(WORDS, k=rng.randint(2, 10))) for _ in range(n)]


def test_equals_pycocoevalcap_when_frequencies_come_from_the_references():
    rng = random.Random(0)
    candidates = sentences(rng, 40)
    references = [sentences(rng, rng.randint(1, 5)) for _ in range(40)]
    scorer = CiderScorer(n=4, sigma=6.0)
    for c, refs in zip(candidates, references, strict=True):
        scorer += (c, refs)
    _, expected = scorer.compute_score()
    got = cider_d(candidates, references, prepared=True)
    assert np.abs(got - expected).max() < 1e-12
    assert got.std() > 0.1  # the scores differ: the comparison means something


def test_fixed_frequencies_make_a_score_independent_of_its_batch():
    rng = random.Random(1)
    train = [sentences(rng, 2) for _ in range(200)]
    df = DocumentFrequency.from_references(train)
    candidates, references = sentences(rng, 6), [sentences(rng, 3) for _ in range(6)]
    batch = cider_d(candidates, references, df)
    alone = [cider_d([c], [r], df)[0] for c, r in zip(candidates, references, strict=True)]
    assert batch == pytest.approx(alone, rel=1e-12)
    # counted over the batch instead, the same caption scores differently in another batch
    assert cider_d(candidates[:2], references[:2])[0] != pytest.approx(
        cider_d(candidates, references)[0])
    # a copy of a reference beats a caption sharing nothing with it
    best, worst = cider_d(["a red circle", "blue blue"], [["a red circle"]] * 2, df)
    assert best > 1.0 > 0.0 == worst


def test_scst_text_is_what_the_official_reward_reads():
    assert scst_text(" a red, circle. ") == "a red circle <eos>"
    assert scst_text("").split() == ["<eos>"]
    # the end marker makes the last words' n-grams count: "circle" at the end matches
    df = DocumentFrequency.from_references([["a red circle"], ["a blue square"]])
    ending, not_ending = cider_d(["a red circle", "a red circle a"], [["a red circle"]] * 2, df)
    assert ending > not_ending


def test_frequency_files_round_trip_reproducibly_and_refuse_anything_else(tmp_path):
    df = DocumentFrequency.from_references([["a red circle", "red circle"], ["a blue square"]])
    assert df.images == 2 and df.counts[("a",)] == 2 and df.counts[("red", "circle")] == 1
    assert df.counts[("circle", "<eos>")] == 1  # counted once per image, not per reference
    one, two = df.save(tmp_path / "a.json.gz"), df.save(tmp_path / "b.json.gz")
    assert one.read_bytes() == two.read_bytes()
    assert DocumentFrequency.load(one) == df
    bad = {"not gzip": b"{}", "not json": gzip.compress(b"\x80abc"),
           "other json": gzip.compress(b'{"format": "something"}'),
           "bad counts": gzip.compress(json.dumps(
               {"format": "ofa-cider-df", "images": 1, "ngrams": {"a": 5}}).encode())}
    for name, data in bad.items():
        path = tmp_path / f"{name}.gz"
        path.write_bytes(data)
        with pytest.raises(InputError):
            DocumentFrequency.load(path)
    with pytest.raises(InputError, match="no document-frequency file"):
        DocumentFrequency.load(tmp_path / "missing.gz")
    with pytest.raises(InputError, match="no references"):
        DocumentFrequency.from_references([])
    with pytest.raises(InputError, match="at least one reference"):
        cider_d(["a"], [[]], df)


def test_reference_sets_gather_each_images_captions():
    records = [{"task": "caption", "image": "/x/1.png", "caption": "A Red circle"},
               {"task": "vqa", "image": "/x/1.png", "question": "what?"},
               {"task": "caption", "image": "/x/2.png", "caption": "a blue square"},
               {"task": "caption", "image": "/x/1.png", "caption": "a red-circle"},
               {"task": "caption", "image": b"png bytes", "caption": "one"},
               {"task": "caption", "image": b"png bytes", "caption": "two"},
               {"task": "caption", "image": "/x/3.png", "caption": ["r1", "r2"]}]
    assert reference_sets(records) == [["a red circle", "a red circle"], ["a blue square"],
                                       ["one", "two"], ["r1", "r2"]]
    with pytest.raises(InputError, match="no caption records"):
        reference_sets(records[1:2])


def test_cli_counts_jsonl_and_official_tsv(tmp_path, capsys):
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text("\n".join(json.dumps({"task": "caption", "image": f"{i % 3}.png",
                                           "caption": f"a red circle {i}"}) for i in range(6)))
    out = tmp_path / "df.json.gz"
    assert cli.main(["data", "cider-df", str(jsonl), "--out", str(out)]) == 0
    assert "6 references of 3 images" in capsys.readouterr().out
    assert DocumentFrequency.load(out).counts[("red",)] == 3
    png = io.BytesIO()
    Image.new("RGB", (4, 4)).save(png, format="PNG")
    image = base64.b64encode(png.getvalue()).decode()
    tsv = tmp_path / "caption_stage2_train.tsv"
    tsv.write_text("".join(f"{i}\t{i}\ta red circle&&a circle\t\t{image}\n" for i in range(2)))
    assert cli.main(["data", "cider-df", str(tsv), "--out", str(out)]) == 0
    assert "4 references of 2 images" in capsys.readouterr().out
    assert cli.main(["data", "cider-df", str(tmp_path / "none.jsonl"), "--out", str(out)]) != 0
