"""ShapesWorld: determinism, pixel-exact boxes and annotations that agree with the scene."""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import ofa.data.shapes as shapes
from ofa.data import BACKGROUNDS, COLORS, SHAPES, SIZES, VQA_ANSWERS, Scene, ShapesWorld
from ofa.data.shapes import (
    MAX_SHAPES,
    NUMBER_WORDS,
    PROPERTIES,
    RELATIONS,
    annotation_kind,
    split_code,
)
from ofa.errors import InputError

WORLD = ShapesWorld(seed=0)
SCENES = [WORLD.scene("train", i) for i in range(200)]


def png_bytes(scene: Scene) -> bytes:
    buf = io.BytesIO()
    scene.render().save(buf, format="PNG")
    return buf.getvalue()


def find(scene: Scene, color: str, kind: str):
    matches = [s for s in scene.shapes if s.color == color and s.kind == kind]
    assert len(matches) <= 1
    return matches[0] if matches else None


def test_deterministic_scene_and_png():
    again = ShapesWorld(seed=0)
    for i in (0, 7, 123):
        assert again.scene("train", i) == WORLD.scene("train", i)
        assert png_bytes(again.scene("train", i)) == png_bytes(WORLD.scene("train", i))
        assert again.records("train", i, "a.png") == WORLD.records("train", i, "a.png")


def test_different_index_split_seed_give_different_scenes():
    train = [WORLD.scene("train", i) for i in range(20)]
    assert len({repr(s) for s in train}) == 20
    for split in ("val", "test", "extra"):
        other = [WORLD.scene(split, i) for i in range(20)]
        assert all(a != b for a, b in zip(train, other, strict=True))
    assert ShapesWorld(seed=1).scene("train", 0) != train[0]
    assert split_code("extra") == split_code("extra") and split_code("val") == 1


def test_scene_structure():
    for scene in SCENES:
        assert scene.background in BACKGROUNDS
        assert 1 <= len(scene.shapes) <= 3
        pairs = [(s.color, s.kind) for s in scene.shapes]
        assert len(set(pairs)) == len(pairs)
        for s in scene.shapes:
            assert s.kind in SHAPES and s.color in COLORS and s.size in SIZES
            x0, y0, x1, y1 = s.box
            assert 0 <= x0 < x1 <= scene.width and 0 <= y0 < y1 <= scene.height
            lo, hi = (0.18, 0.30) if s.size == "small" else (0.34, 0.48)
            assert lo * scene.width <= x1 - x0 <= hi * scene.width


def test_plain_scene_drops_texture_and_jitter_only():
    from ofa.data.shapes import BACKGROUND_RGB, COLOR_RGB

    world = ShapesWorld(seed=0)
    scenes = [world.scene("train", i) for i in range(40)]
    assert {s.texture for s in scenes} == {"flat", "noise", "gradient"}
    for scene in scenes:
        plain = scene.plain()
        assert plain.caption() == scene.caption() and plain.texture == "flat"
        assert [s.box for s in plain.shapes] == [s.box for s in scene.shapes]
        assert all(s.rgb == COLOR_RGB[s.color] for s in plain.shapes)
        pixels = np.asarray(plain.render())
        # the background is one colour, and every pixel is background or a palette colour
        assert tuple(pixels[0, 0]) == BACKGROUND_RGB[scene.background]
        palette = {BACKGROUND_RGB[scene.background], *(COLOR_RGB[s.color] for s in scene.shapes)}
        assert {tuple(p) for p in pixels.reshape(-1, 3)} <= palette


def test_boxes_match_drawn_pixels():
    for scene in SCENES[:60]:
        pixels = np.asarray(scene.render()).astype(int)
        for s in scene.shapes:
            # Shapes are drawn flat (no anti-aliasing): their pixels carry exactly their rgb.
            ys, xs = np.nonzero((pixels == np.array(s.rgb)).all(axis=-1))
            assert len(xs) > 0
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == tuple(int(v) for v in s.box)


def test_boxes_do_not_overlap():
    for scene in SCENES:
        for i, a in enumerate(scene.shapes):
            for b in scene.shapes[i + 1:]:
                assert (a.box[2] < b.box[0] or b.box[2] < a.box[0]
                        or a.box[3] < b.box[1] or b.box[3] < a.box[1])


def test_caption_lists_objects_left_to_right():
    for scene in SCENES:
        caption = scene.caption()
        parts = re.split(r", | and ", caption)
        ordered = sorted(scene.shapes, key=lambda s: s.center[0])
        assert parts == [f"a {s.size} {s.color} {s.kind}" for s in ordered]
        assert caption == caption.lower() and not caption.endswith(".")


def test_vqa_answers_agree_with_scene():
    kinds_seen = Counter()
    for scene in SCENES:
        qa = scene.questions()
        assert 4 <= len(qa) <= 6
        assert len({q for q, _ in qa}) == len(qa)
        colors = [s.color for s in scene.shapes]
        for question, answer in qa:
            assert answer in VQA_ANSWERS and question.endswith("?")
            if m := re.fullmatch(r"is the (\w+) (\w+) (left of|right of|above|below) "
                                 r"the (\w+) (\w+)\?", question):
                a, b = find(scene, m[1], m[2]), find(scene, m[4], m[5])
                axis = 0 if m[3] in ("left of", "right of") else 1
                delta = a.center[axis] - b.center[axis]
                assert abs(delta) > 0.15 * scene.width
                truth = delta < 0 if m[3] in ("left of", "above") else delta > 0
                assert answer == ("yes" if truth else "no")
                kinds_seen["relation"] += 1
            elif question == "how many shapes are there?":
                assert answer == NUMBER_WORDS[len(scene.shapes)]
                kinds_seen["count"] += 1
            elif m := re.fullmatch(r"how many (\w+) shapes are there\?", question):
                assert answer == NUMBER_WORDS[colors.count(m[1])]
                kinds_seen["count"] += 1
            elif m := re.fullmatch(r"is there a (\w+) (\w+)\?", question):
                assert answer == ("yes" if find(scene, m[1], m[2]) else "no")
                kinds_seen["exist-" + answer] += 1
            elif m := re.fullmatch(r"what size is the (\w+) (\w+)\?", question):
                assert answer == find(scene, m[1], m[2]).size
                kinds_seen["size"] += 1
            elif m := re.fullmatch(r"what shape is the (\w+) object\?", question):
                assert [s.kind for s in scene.shapes if s.color == m[1]] == [answer]
                kinds_seen["shape"] += 1
            elif m := re.fullmatch(r"what color is the (?:(small|large) )?(\w+)\?", question):
                hits = [s for s in scene.shapes
                        if s.kind == m[2] and (m[1] is None or s.size == m[1])]
                assert [s.color for s in hits] == [answer]
                kinds_seen["color"] += 1
            else:
                pytest.fail(f"unexpected question {question!r}")
    for kind in ("relation", "count", "exist-yes", "exist-no", "size", "shape", "color"):
        assert kinds_seen[kind] >= 40, kinds_seen
    assert 0.7 < kinds_seen["exist-yes"] / kinds_seen["exist-no"] < 1.4


def test_referring_expressions_are_unique_and_boxed():
    short_forms = 0
    for scene in SCENES:
        refs = scene.referring()
        assert len(refs) == len(scene.shapes)
        assert {box for _, box in refs} == {s.box for s in scene.shapes}
        for text, box in refs:
            words = text.split()[1:]
            if len(words) == 2 and words[1] == "shape":
                hits = [s for s in scene.shapes if s.color == words[0]]
            elif len(words) == 1:
                hits = [s for s in scene.shapes if s.kind == words[0]]
            else:
                hits = [find(scene, *words)]
            short_forms += len(words) == 1 or words[-1] == "shape"
            assert len(hits) == 1 and hits[0].box == box
    assert short_forms > 50


def test_entailment_statements():
    labels = Counter()
    for scene in SCENES[:50]:
        statements = scene.statements()
        assert 3 <= len(statements) <= 4
        for text, label in statements:
            labels[label] += 1
            n_words = {w: i for i, w in enumerate(NUMBER_WORDS)}
            if label == "neutral":
                assert any(text.endswith(" is " + p) for p in PROPERTIES)
                continue
            truth = label == "entailment"
            if m := re.fullmatch(r"there is a (\w+) (\w+)", text):
                holds = find(scene, m[1], m[2]) is not None
            elif m := re.fullmatch(r"there (?:is|are) (\w+) shapes?", text):
                holds = n_words[m[1]] == len(scene.shapes)
            elif m := re.fullmatch(r"the (\w+) (\w+) is (small|large)", text):
                holds = find(scene, m[1], m[2]).size == m[3]
            elif m := re.fullmatch(r"the (\w+) (\w+) is (left of|right of|above|below) "
                                   r"the (\w+) (\w+)", text):
                a, b = find(scene, m[1], m[2]), find(scene, m[4], m[5])
                holds = scene.relation_holds(a, b, m[3])
                assert holds is not None
            else:
                pytest.fail(f"unexpected statement {text!r}")
            assert holds == truth, (text, label)
    assert set(labels) == {"entailment", "contradiction", "neutral"}


def test_label_is_kind_of_largest_shape():
    for scene in SCENES:
        areas = sorted((s.area for s in scene.shapes), reverse=True)
        largest = [s for s in scene.shapes if s.area == areas[0]]
        assert scene.label() == largest[0].kind
        if len(areas) > 1:  # the largest shape is clearly larger, never a 1-pixel call
            assert areas[0] > 1.15 * areas[1]


def test_label_distribution_covers_vocabulary():
    colors = Counter(s.color for scene in SCENES for s in scene.shapes)
    kinds = Counter(s.kind for scene in SCENES for s in scene.shapes)
    assert set(colors) == set(COLORS) and min(colors.values()) > 20
    assert set(kinds) == set(SHAPES) and min(kinds.values()) > 30
    assert set(Counter(scene.label() for scene in SCENES)) == set(SHAPES)
    assert set(Counter(len(scene.shapes) for scene in SCENES)) == {1, 2, 3}
    assert set(scene.background for scene in SCENES) == set(BACKGROUNDS)
    assert set(Counter(s.size for scene in SCENES for s in scene.shapes)) == set(SIZES)


def test_crowded_settings_still_fit():
    # Four shapes sometimes fail placement (~2% of scenes) and take the shrink/drop fallbacks.
    world = ShapesWorld(seed=0, max_shapes=4)
    counts = Counter()
    for i in range(100):
        scene = world.scene("train", i)
        counts[len(scene.shapes)] += 1
        for j, a in enumerate(scene.shapes):
            for b in scene.shapes[j + 1:]:
                assert (a.box[2] < b.box[0] or b.box[2] < a.box[0]
                        or a.box[3] < b.box[1] or b.box[3] < a.box[1])
        assert all(answer in VQA_ANSWERS for _, answer in scene.questions())
    assert counts[4] > 10
    small = ShapesWorld(image_size=64).scene("train", 0)
    assert small.render().size == (64, 64)


def test_bad_arguments():
    with pytest.raises(InputError):
        ShapesWorld(max_shapes=9)
    with pytest.raises(InputError):
        ShapesWorld(image_size=8)


def test_write(tmp_path: Path):
    paths = WORLD.write(tmp_path / "out", {"train": 4, "val": 2}, progress=False)
    root = tmp_path / "out"
    assert set(paths) == {"train", "val"}
    assert (root / "answers.txt").read_text().split("\n")[:-1] == list(VQA_ANSWERS)
    assert not list(root.glob("*.tmp")) and not list(root.glob(".*"))
    for split, path in paths.items():
        assert path == root / f"{split}.jsonl"
        records = [json.loads(line) for line in path.read_text().splitlines()]
        ids = [r["id"] for r in records]
        assert len(set(ids)) == len(ids)
        assert {r["task"] for r in records} == {"caption", "vqa", "ground", "entail", "classify"}
        for r in records:
            assert not Path(r["image"]).is_absolute() and r["image"].startswith("images/")
            assert (root / r["image"]).is_file()
        assert len({r["image"] for r in records}) == (4 if split == "train" else 2)
    index = int(Path(records[0]["image"]).stem)
    assert records[: len(WORLD.records("val", index, records[0]["image"]))] == WORLD.records(
        "val", index, records[0]["image"])


def test_write_in_parallel_gives_the_same_files(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(shapes, "_WRITE_CHUNK", 3)  # several chunks per split, one partial
    world = ShapesWorld(seed=2, image_size=48)
    world.write(tmp_path / "one", {"train": 8, "val": 2}, progress=False)
    world.write(tmp_path / "two", {"train": 8, "val": 2}, progress=False, workers=2)
    one = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*"))
    two = sorted(p.relative_to(tmp_path / "two") for p in (tmp_path / "two").rglob("*"))
    assert one == two and len([p for p in one if p.suffix == ".png"]) == 10
    for rel in one:
        if (tmp_path / "one" / rel).is_file():
            assert (tmp_path / "one" / rel).read_bytes() == (tmp_path / "two" / rel).read_bytes()
    with pytest.raises(InputError, match="workers"):
        world.write(tmp_path / "bad", {"train": 1}, workers=0)
    with pytest.raises(InputError, match="count"):
        world.write(tmp_path / "bad", {"train": -1})


SMALL_WORLD = ShapesWorld(seed=1, image_size=64, max_shapes=3)
WRITTEN_SCENES = 16


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    """SMALL_WORLD's first WRITTEN_SCENES training scenes, written once for the set tests."""
    out = tmp_path_factory.mktemp("shapes")
    SMALL_WORLD.write(out, {"train": WRITTEN_SCENES}, progress=False)
    return out


def _read_set(root: Path, name: str) -> list[dict]:
    records = [json.loads(line) for line in (root / f"train_{name}.jsonl").open()]
    assert len({r["id"] for r in records}) == len(records)
    return records


def test_write_relation_files(written: Path):
    records = _read_set(written, "relations")
    expected = 0
    for index in range(WRITTEN_SCENES):
        scene = SMALL_WORLD.scene("train", index)
        expected += 2 * len(scene._relation_items())
        names = {s.name: s for s in scene.shapes}
        mine = [r for r in records if r["image"] == f"images/train/{index:06d}.png"]
        for r in mine:
            assert annotation_kind(r) == "relation"
            text = r["question"] if r["task"] == "vqa" else r["hypothesis"]
            a, rel, b = re.fullmatch(rf"(?:is )?the (\w+ \w+) (?:is )?({'|'.join(RELATIONS)}) "
                                     r"the (\w+ \w+)\??", text).groups()
            truth = scene.relation_holds(names[a], names[b], rel)
            assert truth is not None
            answer = (r["answers"] == {"yes": 1.0} if r["task"] == "vqa"
                      else r["label"] == "entailment")
            assert answer == truth, r
    assert len(records) == expected > 0
    assert {r["task"] for r in records} == {"vqa", "entail"}


def test_annotation_kind_names_the_template():
    for index, scene in enumerate(SCENES[:60]):
        for kind, groups in scene._question_pools().items():
            for question, _ in (q for group in groups for q in group):
                assert annotation_kind({"task": "vqa", "question": question}) == kind, question
        for record in WORLD.records("train", index, "x.png"):
            kind = annotation_kind(record)
            if record["task"] == "entail":
                # property statements are exactly the neutral ones
                assert (kind == "property") == (record["label"] == "neutral"), record
                relation = any(f" {r} the " in record["hypothesis"] for r in RELATIONS)
                assert (kind == "relation") == relation, record
            elif record["task"] == "ground":
                names = [s.name for s in scene.shapes]
                assert (kind == "full") == (record["text"].removeprefix("the ") in names)
            elif record["task"] in ("caption", "classify"):
                assert kind == record["task"]
    with pytest.raises(InputError, match="matches no ShapesWorld template"):
        annotation_kind({"task": "vqa", "id": "q1", "question": "why is the sky blue?"})


def test_write_count_and_referring_files(written: Path):
    counts, referring = _read_set(written, "counts"), _read_set(written, "referring")
    for index in range(WRITTEN_SCENES):
        scene = SMALL_WORLD.scene("train", index)
        image = f"images/train/{index:06d}.png"
        # one question for all shapes, one per colour present, as many absent colours ("zero")
        asked = {r["question"]: r["answers"] for r in counts
                 if r["image"] == image and r["task"] == "vqa"}
        present = {s.color for s in scene.shapes}
        assert len(asked) == 1 + 2 * len(present)
        assert asked["how many shapes are there?"] == {NUMBER_WORDS[len(scene.shapes)]: 1.0}
        for color in COLORS:
            n = sum(s.color == color for s in scene.shapes)
            question = f"how many {color} shapes are there?"
            if color in present:
                assert asked[question] == {NUMBER_WORDS[n]: 1.0}
            else:
                assert asked.get(question, {"zero": 1.0}) == {"zero": 1.0}
        stated = {r["hypothesis"]: r["label"] for r in counts
                  if r["image"] == image and r["task"] == "entail"}
        assert len(stated) == MAX_SHAPES
        assert list(stated.values()).count("entailment") == 1
        true_count = "there is one shape" if len(scene.shapes) == 1 else (
            f"there are {NUMBER_WORDS[len(scene.shapes)]} shapes")
        assert stated[true_count] == "entailment"
        # every expression names exactly one shape, and every shape gets its full name
        mine = [r for r in referring if r["image"] == image]
        for r in mine:
            words = r["text"].split()[1:]
            matches = [s for s in scene.shapes
                       if words == [s.color, s.kind] or words == [s.kind]
                       or words == [s.color, "shape"]]
            assert len(matches) == 1 and r["box"] == list(matches[0].box), r
            assert annotation_kind(r) in ("full", "kind", "color")
        assert {r["text"] for r in mine} >= {f"the {s.name}" for s in scene.shapes}
        kinds = [s.kind for s in scene.shapes]
        assert sum(r["text"] in {f"the {k}" for k in kinds} for r in mine) == sum(
            kinds.count(k) == 1 for k in kinds)
    assert {annotation_kind(r) for r in referring} == {"full", "kind", "color"}


def test_write_existence_file(written: Path):
    records = _read_set(written, "existence")
    swaps = 0
    for index in range(WRITTEN_SCENES):
        scene = SMALL_WORLD.scene("train", index)
        mine = [r for r in records if r["image"] == f"images/train/{index:06d}.png"]
        pairs = {(s.color, s.kind) for s in scene.shapes}
        colors, kinds = {c for c, _ in pairs}, {k for _, k in pairs}
        asked = {tuple(r["question"].removesuffix("?").split()[-2:]): r["answers"]
                 for r in mine if r["task"] == "vqa"}
        stated = {tuple(r["hypothesis"].split()[-2:]): r["label"]
                  for r in mine if r["task"] == "entail"}
        assert asked.keys() == stated.keys() and len(asked) == 2 * len(pairs)
        for pair, answers in asked.items():
            truth = pair in pairs
            assert answers == {"yes" if truth else "no": 1.0}
            assert stated[pair] == ("entailment" if truth else "contradiction")
            # every absent pair is a hard one: it shares a colour or a kind with a shape
            assert truth or pair[0] in colors or pair[1] in kinds
            swaps += not truth and pair[0] in colors and pair[1] in kinds
        assert all(annotation_kind(r) == "exist" for r in mine)
    assert swaps > 0


def test_write_distractors_file(written: Path):
    referring, distractors = _read_set(written, "referring"), _read_set(written, "distractors")
    shared = {"kind": 0, "color": 0}
    for index in range(WRITTEN_SCENES):
        scene = SMALL_WORLD.scene("train", index)
        image = f"images/train/{index:06d}.png"
        # exactly the unique expressions of the shapes that share an attribute with another
        wanted = []
        for shape in scene._ordered():
            others = [o for o in scene.shapes if o is not shape]
            shared["kind"] += any(o.kind == shape.kind for o in others)
            shared["color"] += any(o.color == shape.color for o in others)
            if any(o.kind == shape.kind or o.color == shape.color for o in others):
                wanted += [(t, list(shape.box)) for t in scene.expressions(shape)]
        mine = [(r["text"], r["box"]) for r in distractors if r["image"] == image]
        assert mine == wanted
        assert all(pair in [(r["text"], r["box"]) for r in referring if r["image"] == image]
                   for pair in mine)
    assert shared["kind"] > 0 and shared["color"] > 0
    assert all(r["task"] == "ground" for r in distractors)
