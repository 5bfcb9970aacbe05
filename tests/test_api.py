"""The Python API end to end on a small random model saved as a native folder, and one
oracle case through the full public path (image file -> caption ids)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import ofa
from ofa.checkpoints import save_native
from ofa.errors import InputError
from ofa.model import OFAModel
from ofa.tokenizer import OFATokenizer

from conftest import tiny_config


@pytest.fixture(scope="module")
def native_dir(tmp_path_factory, bpe_dir):
    torch.manual_seed(0)
    model = OFAModel(tiny_config()).eval()
    out = tmp_path_factory.mktemp("api") / "tiny-vqa"
    save_native(model, out, OFATokenizer.from_dir(bpe_dir), source={"task": "vqa"})
    return out


@pytest.fixture(scope="module")
def m(native_dir):
    return ofa.load(native_dir, device="cpu")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("imgs")
    paths = []
    for i, size in enumerate([(80, 60), (50, 70), (64, 64)]):
        p = folder / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths


def test_single_and_batch_results_agree(m, images):
    one = m.caption(images[0])
    many = m.caption(images, batch_size=2)
    assert isinstance(one, dict) and len(many) == 3
    assert one == many[0]
    assert one["input"] == images[0] and one["tokens"][-1] == 2
    assert set(one) == {"input", "caption", "tokens", "score"}
    # the caption is the decoded tokens with punctuation stripped
    text = m.tokenizer.decode(one["tokens"])
    assert one["caption"] == "".join(c for c in text if c.isalnum() or c.isspace()).strip() \
        or one["caption"] in text


def test_images_as_pil_array_and_tensor_give_the_same(m, images):
    pil = Image.open(images[0])
    arr = np.asarray(pil)
    ref = m.caption(images[0])
    for x in (pil, arr):
        r = m.caption(x)
        assert r["tokens"] == ref["tokens"]


def test_decoding_overrides_and_bad_option(m, images):
    r = m.caption(images[0], max_len_b=3)
    assert len(r["tokens"]) <= 4
    r = m.caption(images[0], beam_size=3, nbest=2)
    assert len(r["nbest"]) == 2 and r["nbest"][0]["score"] >= r["nbest"][1]["score"]
    with pytest.raises(InputError, match="unknown decoding option"):
        m.caption(images[0], beams=3)
    with pytest.raises(InputError):
        m.caption(images[0], beam_size=0)


def test_vqa_modes(m, images):
    answers = ["red", "blue", "two dogs", "a cat on a mat"]
    beam = m.vqa(images[0], "What color is the cat", answers=answers)
    assert beam["question"] == "what color is the cat?"  # official normalisation
    assert beam["answer"] in answers
    q_ids = m.tokenizer.encode(" what color is the cat?", add_bos_eos=False)
    assert beam["tokens"][:len(q_ids)] == q_ids  # forced prev_output prefix
    allc = m.vqa(images[0], "What color is the cat", answers=answers, mode="all")
    assert set(allc["scores"]) == set(answers)
    assert allc["answer"] == max(allc["scores"], key=allc["scores"].get)
    assert allc["score"] == pytest.approx(max(allc["scores"].values()))
    opened = m.vqa(images[0], "What color is the cat", mode="open", max_len_b=9)
    assert opened["tokens"][:len(q_ids)] == q_ids
    zs = m.vqa(images[0], "What color is the cat", zero_shot=True, max_len_b=3)
    assert zs["tokens"][:len(q_ids)] != q_ids  # zero-shot: no forced question
    with pytest.raises(InputError, match="answers"):
        m.vqa(images[0], "why?", mode="all")
    with pytest.raises(InputError, match="mode"):
        m.vqa(images[0], "why?", mode="fast")
    objs = m.vqa(images[0], "what is it", objects=["cat", "mat"], mode="open", max_len_b=12)
    o_ids = m.tokenizer.encode(" what is it? object: cat mat", add_bos_eos=False)
    assert objs["tokens"][:len(o_ids)] == o_ids


def test_ground_entail_classify_summarize_generate(m, images):
    g = m.ground(images[0], "The dog, on the left", bins_only=True)
    assert g["text"] == "the dog, on the left"
    assert len(g["tokens"]) == 5 and all(58457 <= t < 59457 for t in g["tokens"][:4])
    w, h = Image.open(images[0]).size
    x0, y0, x1, y1 = g["box"]
    assert all(0 <= v <= max(w, h) + 1 for v in g["box"])
    bins = [t - 58457 for t in g["tokens"][:4]]
    assert x0 == pytest.approx(bins[0] / 999 * 512 * w / 512, abs=0.01)
    assert y1 == pytest.approx(bins[3] / 999 * 512 * h / 512, abs=0.01)

    e = m.entail(images[:2], "two cats", premises="animals")
    assert [r["answer"] for r in e] == [max(r["scores"], key=r["scores"].get) for r in e]
    assert {r["label"] for r in e} <= {"entailment", "contradiction", "neutral"}

    c = m.classify(images[0], ["cat", "dog", "tabby cat"], topk=2)
    assert len(c["topk"]) == 2 and c["label"] == c["topk"][0]["label"]

    s = m.summarize(["A long article about nothing.", "Another one."], max_len_b=5)
    assert len(s) == 2 and all(len(r["tokens"]) <= 6 for r in s)

    free = m.generate(" what is this?", max_len_b=3)
    with_img = m.generate(" what is this?", images[0], max_len_b=3)
    assert free["tokens"] != with_img["tokens"] or free["score"] != with_img["score"]


def test_batch_equals_items_alone(m, images):
    batch = m.vqa(images, ["what is it", "is it red", "how many dogs are there"],
                  answers=["yes", "no", "2", "red"], batch_size=3)
    for img, q, r in zip(images, ["what is it", "is it red", "how many dogs are there"], batch,
                         strict=True):
        alone = m.vqa(img, q, answers=["yes", "no", "2", "red"])
        assert alone["tokens"] == r["tokens"]
        assert alone["score"] == pytest.approx(r["score"], abs=1e-4)


def test_batches_group_similar_lengths_and_keep_input_order(m, images, monkeypatch):
    questions = ["how many dogs are there in this picture today", "is it", "what is it",
                 "is it red or is it blue or green", "why", "who is"]
    imgs = [images[i % 3] for i in range(len(questions))]
    widths = []
    tensors = m._tensors

    def spy(batch):
        ids, image, mask = tensors(batch)
        widths.append([int(r.ne(1).sum()) for r in ids])
        return ids, image, mask

    monkeypatch.setattr(m, "_tensors", spy)
    batched = m.vqa(imgs, questions, answers=["yes", "no", "2"], batch_size=2)
    monkeypatch.undo()
    # each batch holds neighbours in length order: the shortest two, then the next two, ...
    flat = [n for batch in widths for n in batch]
    assert flat == sorted(flat)
    for img, q, r in zip(imgs, questions, batched, strict=True):
        alone = m.vqa(img, q, answers=["yes", "no", "2"])
        assert (r["question"], r["tokens"]) == (alone["question"], alone["tokens"])


def test_bad_inputs_reported_per_item(m, images, tmp_path):
    corrupt = tmp_path / "bad.png"
    corrupt.write_bytes(b"\x89PNG not really")
    out = m.caption([images[0], str(tmp_path / "missing.jpg"), str(corrupt)], errors="return")
    assert "caption" in out[0]
    assert "not found" in out[1]["error"] and out[2]["error"]
    with pytest.raises(InputError):
        m.caption(str(corrupt))
    with pytest.raises(InputError, match="empty"):
        m.vqa(images[0], "   ")
    with pytest.raises(InputError, match="2 images but 3"):
        m.vqa(images[:2], ["a", "b", "c"])


def test_text_only_model_refuses_image_tasks(native_dir, images):
    m = ofa.load(native_dir, device="cpu")
    m.task = "summarize"
    with pytest.raises(InputError, match="text-only"):
        m.ground(images[0], "the dog")


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision(native_dir, images, m, dtype):
    half = ofa.load(native_dir, device="cpu", dtype=dtype)
    assert half.dtype == getattr(torch, dtype)
    ref = m.vqa(images[0], "what is it", answers=["yes", "no", "red"], mode="all")
    out = half.vqa(images[0], "what is it", answers=["yes", "no", "red"], mode="all")
    for a in ref["scores"]:  # log-softmax runs in fp32; only the weights are rounded
        assert out["scores"][a] == pytest.approx(ref["scores"][a], abs=0.05)


def test_load_errors(tmp_path):
    with pytest.raises(InputError, match="unknown|no such"):
        ofa.load("ofa-gigantic", device="cpu")
    with pytest.raises(InputError, match="no such checkpoint"):
        ofa.load(str(tmp_path / "nope.pt"), device="cpu")
    with pytest.raises(InputError, match="dtype"):
        ofa.load("ofa-base", device="cpu", dtype="float8")


def test_inference_model_mmpretrain_keys(native_dir, images):
    m = ofa.load(native_dir, device="cpu")
    m.task = "caption"
    assert set(ofa.inference_model(m, images[0])) == {"pred_caption"}
    m.task = "vqa"
    r = ofa.inference_model(m, images[0], "what is it?", answers=["yes", "no"])
    assert set(r) == {"question", "pred_answer"} and r["pred_answer"] in ("yes", "no")
    m.task = "ground"
    r = ofa.inference_model(m, images[0], "the dog", bins_only=True)
    assert r["pred_bboxes"].shape == (1, 4)


def test_caption_matches_oracle_through_public_api(oracle_dir, synth, synth_state, tmp_path,
                                                   bpe_dir):
    """caption_tiny: PNG file on disk -> ofa.load(mmpretrain .pth) -> caption tokens equal the
    fairseq-style reference (beam 5, official settings)."""
    torch.save(synth_state("ofa-tiny"), tmp_path / "w.pth")
    m = ofa.load(tmp_path / "w.pth", device="cpu", vocab=bpe_dir)
    case = json.loads((oracle_dir / "cases" / "caption_tiny.json").read_text())
    from safetensors.torch import load_file

    pixels = load_file(str(oracle_dir / "cases" / "caption_tiny.safetensors"))["image_uint8"]
    Image.fromarray(pixels[0].permute(1, 2, 0).numpy()).save(tmp_path / "img.png")
    r = m.caption(str(tmp_path / "img.png"))
    fs = case["generation"]["modelscope"]["fs_official"]
    assert r["tokens"] == fs["ids"][0]
    assert r["score"] == pytest.approx(fs["score"][0], abs=1e-4)


def test_text_that_is_not_utf8_fails_only_its_item(m, images):
    # "what \xff" read with Python's surrogateescape (sys.argv, os.fsdecode) holds \udcff
    out = m.vqa(images[0], ["what is it", "what \udcff is it", "is it red"], errors="return",
                max_len_b=2)
    assert "answer" in out[0] and "answer" in out[2]
    assert out[1]["error"] == ("question is not valid UTF-8 text (byte 0xff at character 6 "
                               "of 'what \\xff is it')")
    with pytest.raises(InputError, match="question is not valid UTF-8 text"):
        m.vqa(images[0], "what \udcff")
    out = m.summarize(["an article about dogs", "bad \ud800 text"], errors="return",
                      max_len_b=2)
    assert "summary" in out[0]
    assert out[1]["input"] == "bad \\ud800 text"  # printable, so it can be shown or saved
    assert "text is not valid UTF-8 text (lone surrogate U+D800" in out[1]["error"]
    json.dumps(out, ensure_ascii=False).encode("utf-8")
    # a shared argument refuses the call, in one line, not with a TypeError
    with pytest.raises(InputError, match="not valid UTF-8 text"):
        m.vqa(images[0], "what is it", answers=["yes", "n\udcffo"])


def test_max_pixels_caps_image_files_per_item(native_dir, images):
    capped = ofa.load(native_dir, device="cpu", max_pixels=4000)
    # images[0] is 80 x 60 = 4,800 pixels, images[1] 50 x 70 = 3,500
    out = capped.caption(images[:2], errors="return", max_len_b=2)
    assert out[0]["error"].startswith(f"image file {images[0]} is 80 x 60 = 4,800 pixels, "
                                      "above the limit of 4,000")
    assert "caption" in out[1]
    with pytest.raises(InputError, match="max_pixels must be a positive integer"):
        ofa.load(native_dir, device="cpu", max_pixels=0)
