"""The embedded demo model: shipped, loadable offline, and actually trained (it solves held-out
ShapesWorld scenes), plus `ofa demo` and the fallback of the task commands to it."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from ofa import cli
from ofa.api import load
from ofa.data.shapes import VQA_ANSWERS, ShapesWorld
from ofa.demo import DEMO_DIR, DEMO_IMAGE, DEMO_QUERIES, demo_texts
from ofa.metrics import caption_scores, grounding_accuracy
from ofa.tasks.imagine import ImagineTask
from ofa.tokenizer import OFATokenizer

MAX_WEIGHTS_BYTES = 20_000_000


@pytest.fixture(scope="module")
def demo():
    return load("shapes-demo", device="cpu")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Held-out scenes the model never saw: the test split beyond the shipped test set."""
    out = tmp_path_factory.mktemp("demo-scenes")
    world = ShapesWorld(seed=0)
    items = []
    for i in range(5000, 5024):
        scene = world.scene("test", i)
        path = out / f"{i}.png"
        scene.render().save(path)
        items.append((str(path), scene))
    return items


def test_shipped_files_are_small_fp16_and_self_contained():
    weights = DEMO_DIR / "model.safetensors"
    assert weights.stat().st_size <= MAX_WEIGHTS_BYTES
    from safetensors import safe_open

    with safe_open(str(weights), "pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
    assert dtypes == {"F16"}
    config = json.loads((DEMO_DIR / "config.json").read_text())
    assert config["model"]["vocab_size"] == 59457  # the full OFA vocabulary
    assert config["source"]["image_size"] == 96
    # text-to-image: the VQGAN and the drawing model, format 2 (its embedding by rows)
    assert (DEMO_DIR / "vqgan" / "last.ckpt").stat().st_size < 3_000_000
    draw = json.loads((DEMO_DIR / "draw" / "config.json").read_text())
    assert draw["ofa_format"] == 2 and draw["model"]["code_image_size"] == 64  # 8 x 8 codes
    assert (DEMO_DIR / "draw" / "model.safetensors").stat().st_size < 6_000_000
    everything = sum(f.stat().st_size for f in DEMO_DIR.rglob("*") if f.is_file())
    assert everything < 40_000_000
    assert DEMO_IMAGE.is_file() and set(json.loads(DEMO_QUERIES.read_text())) >= {
        "question", "text"}


def test_reduced_tokenizer_matches_the_full_one(bpe_dir):
    full = OFATokenizer.from_dir(bpe_dir)
    shipped = OFATokenizer.from_dir(DEMO_DIR)
    texts = demo_texts(scenes=60)
    assert [shipped.encode(t) for t in texts] == [full.encode(t) for t in texts]
    # the drawing model reads the text-to-image prompt as it was trained to
    caption = ShapesWorld(seed=0).scene("test", 7).caption()
    assert (ImagineTask().prepare(shipped, "", caption).source
            == ImagineTask().prepare(full, "", caption).source)
    # anything else still encodes (as byte pieces) and decodes back
    assert shipped.decode(shipped.encode(" a zebra on the moon")) == " a zebra on the moon"


def test_demo_model_solves_held_out_scenes(demo, scenes):
    images = [p for p, _ in scenes]
    captions = demo.caption(images, batch_size=8)
    bleu = caption_scores([c["caption"] for c in captions],
                          [[s.caption()] for _, s in scenes])["bleu4"]
    assert bleu > 0.6
    refs = [(p, *s.referring()[0]) for p, s in scenes]
    boxes = demo.ground([p for p, _, _ in refs], [t for _, t, _ in refs], batch_size=8)
    assert grounding_accuracy([b["box"] for b in boxes], [b for _, _, b in refs]) > 0.6
    qa = [(p, *s.questions()[0]) for p, s in scenes]
    answers = demo.vqa([p for p, _, _ in qa], [q for _, q, _ in qa], answers=VQA_ANSWERS,
                       batch_size=8)
    assert sum(a["answer"] == g for a, (_, _, g) in zip(answers, qa, strict=True)) > 0.6 * len(qa)


def test_demo_model_draws_held_out_captions(demo, scenes):
    """Text-to-image offline: the drawing model beside the demo model draws, the demo model
    ranks by its caption likelihood, and the best of 8 drawings shows the caption's shapes in
    their colours (as the checker reads them) for several of them."""
    from ofa.data.shapes_check import check

    captions = [s.caption() for _, s in scenes[:8]]
    drawn = demo.imagine(captions, samples=8, top=1, seed=0)
    assert demo.drawing_model() is not demo.model
    assert all(d.ranked_by == "caption" and d.images[0].size == (64, 64) for d in drawn)
    colours = sum(check(d.images[0], c).colors for d, c in zip(drawn, captions, strict=True))
    assert colours >= 3, colours  # 6 here (4 with the drawer of 5,000 updates); none drawn: 0


def test_ofa_demo_command(tmp_path, capsys):
    out = tmp_path / "boxed.png"
    assert cli.main(["demo", "--out", str(out), "--drawn", str(tmp_path / "drawn.png")]) == 0
    text = capsys.readouterr().out
    for field in ("caption:", "question:", "ground:", "wrote", "draw:", "checker:  sees "):
        assert field in text
    assert Image.open(out).size == (4 * 128, 4 * 128)
    assert Image.open(tmp_path / "drawn.png").size == (4 * 64, 4 * 64)
    caption = json.loads(DEMO_QUERIES.read_text())["caption"]
    assert f'draw:     "{caption}"' in text


def test_task_commands_fall_back_to_the_demo_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OFA_HOME", str(tmp_path / "empty-cache"))
    assert cli.main(["caption", str(DEMO_IMAGE), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "ofa-base-caption is not downloaded" in captured.err
    assert captured.out.strip().split("\t")[1].startswith("a ")


def test_imagine_falls_back_to_the_demo_model_offline(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OFA_HOME", str(tmp_path / "empty-cache"))
    text = "a large red circle to the left of a small blue square"
    assert cli.main(["imagine", text, "--samples", "4", "--top", "2", "--device", "cpu",
                     "--out", str(tmp_path / "drawn")]) == 0
    assert "ofa-large-image-gen is not downloaded" in capsys.readouterr().err
    scores = json.loads((tmp_path / "drawn" / "scores.json").read_text())
    assert len(scores["images"]) == 2 and scores["ranked_by"] == "caption"
    assert Image.open(tmp_path / "drawn" / "0.png").size == (64, 64)


def test_registry_entry_and_answer_list():
    from ofa.checkpoints import model_answers
    from ofa.pretrained import resolve

    entry = resolve("shapes-demo")
    assert entry.path == DEMO_DIR and entry.format == "native"
    assert model_answers(DEMO_DIR) == list(VQA_ANSWERS)


def test_export_demo_writes_a_self_contained_folder(tmp_path, monkeypatch):
    import torch

    from ofa import demo
    from ofa.checkpoints import model_answers, read_checkpoint, save_native
    from ofa.model import OFAModel

    from conftest import tiny_config
    from tiny_imagegen import write_vqgan

    torch.manual_seed(0)
    save_native(OFAModel(tiny_config()).eval(), tmp_path / "best",
                OFATokenizer.from_dir(DEMO_DIR),
                source={"image_size": 96, "trained_updates": 7, "task": "x"})
    fewer = demo.demo_texts  # the vocabulary of fewer scenes: the same steps, faster
    monkeypatch.setattr(demo, "demo_texts", lambda seed=0: fewer(seed, scenes=20))
    # the VQGAN of the folder being replaced stays with the new weights
    write_vqgan(tmp_path / "assets" / "shapes-demo" / "vqgan")
    (tmp_path / "assets" / "shapes-demo" / "draw").mkdir()
    (tmp_path / "assets" / "shapes-demo" / "draw" / "config.json").write_text("{}")
    out = demo.export_demo(tmp_path / "best", tmp_path / "assets" / "shapes-demo")
    assert sorted(p.name for p in (out / "vqgan").iterdir()) == ["last.ckpt", "model.yaml"]
    assert (out / "draw" / "config.json").read_text() == "{}"
    ckpt = read_checkpoint(out)
    assert {v.dtype for v in ckpt.state_dict.values() if v.is_floating_point()} == {
        torch.float16}
    source = json.loads((out / "config.json").read_text())["source"]
    assert source == {"image_size": 96, "trained_updates": 7, "registry_name": "shapes-demo"}
    assert model_answers(out) == list(VQA_ANSWERS)
    assert (tmp_path / "assets" / "demo.png").is_file()
    assert set(json.loads((tmp_path / "assets" / "demo.json").read_text())) == {
        "question", "text", "caption"}


def test_export_drawing_keeps_the_embedding_rows_it_draws_with(tmp_path, bpe_dir):
    """The drawing model ships fp16 with only the rows of the prompts' tokens, the specials
    and the VQGAN's codes, and draws exactly what the fp16 model it came from draws."""
    import torch

    from ofa import demo
    from ofa.checkpoints import load_model, save_native
    from ofa.imagegen.imagine import imagine
    from ofa.imagegen.vqgan_io import load_vqgan
    from ofa.model import OFAModel
    from ofa.tokenizer import CODE_OFFSET

    from conftest import tiny_config
    from tiny_imagegen import write_vqgan

    torch.manual_seed(0)
    model = OFAModel(tiny_config(code_image_size=32)).eval()
    tokenizer = OFATokenizer.from_dir(bpe_dir)
    save_native(model, tmp_path / "final", tokenizer, source={"trained_updates": 3})
    vqgan = load_vqgan(write_vqgan(tmp_path / "shapes-demo" / "vqgan"))
    out = demo.export_drawing(tmp_path / "final", tmp_path / "shapes-demo" / "draw")
    config = json.loads((out / "config.json").read_text())
    assert config["ofa_format"] == 2
    assert config["source"] == {"trained_updates": 3, "task": "imagine"}
    from safetensors.torch import load_file
    assert {v.dtype for v in load_file(str(out / "model.safetensors")).values()
            if v.is_floating_point()} == {torch.float16}
    drawer = load_model(out)
    stored = drawer.embed_tokens.weight.ne(0).any(1)
    caption = ShapesWorld(seed=0).scene("test", 3000).caption()  # beyond the scenes read
    ids = ImagineTask().prepare(tokenizer, "", caption).source
    codes = vqgan.config.n_embed
    assert stored[ids].all() and stored[CODE_OFFSET:CODE_OFFSET + codes].all()
    assert int(stored.sum()) < codes + 100  # the specials and a few dozen prompt tokens
    fp16 = model.half().float()
    a = imagine(fp16, tokenizer, caption, vqgan, None, samples=2, top=2, seed=0)
    b = imagine(drawer.float(), tokenizer, caption, vqgan, None, samples=2, top=2, seed=0)
    assert torch.equal(a.codes, b.codes)
