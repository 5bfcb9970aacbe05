"""The pretrained-model registry: names, aliases, entries and look-up errors."""

from __future__ import annotations

import pytest

from ofa import pretrained as P
from ofa.errors import InputError

KNOWN = {
    "caption_base_best": "ofa-base-caption",
    "caption_base_best.pt": "ofa-base-caption",
    "CAPTION_BASE_BEST.PT": "ofa-base-caption",
    "ofa-base-caption": "ofa-base-caption",
    "ofa-base_3rdparty-finetuned_caption": "ofa-base-caption-mmpretrain",
    "ofa-base_3rdparty_coco-caption_20230418-de18914e.pth": "ofa-base-caption-mmpretrain",
    "ofa-base_3rdparty-finetuned_refcoco": "ofa-base-refcoco-mmpretrain",
    "ofa-base_3rdparty-finetuned_vqa": "ofa-base-vqa-mmpretrain",
    "ofa-base_3rdparty-zeroshot_vqa": "ofa-base-mmpretrain",
    "OFA-Sys/ofa-base": "ofa-base-hf",
    "ofa-sys/OFA-huge": "ofa-huge-hf",
    "OFA-Sys/ofa-large-caption": "ofa-large-caption-hf",
    "ofa-base": "ofa-base",
    "ofa_base.pt": "ofa-base",
    " ofa_large ": "ofa-large",
    "vqa_large_best.pt": "ofa-large-vqa",
    "caption_large_best_clean.pt": "ofa-large-caption",
    "caption_stage1_best.pt": "ofa-large-caption-stage1",
    "snli_ve_base_best": "ofa-base-snli-ve",
    "imagenet_1k_large_best.pt": "ofa-large-imagenet",
    "image_gen_base_best.pt": "ofa-base-image-gen",
    "image_gen_large_best.zip": "ofa-large-image-gen",
    "image_gen_large_best.pt": "ofa-large-image-gen",
    "image_gen_large_best": "ofa-large-image-gen",
    "https://ofa-beijing.oss-cn-beijing.aliyuncs.com/checkpoints/image_gen_large_best.zip":
        "ofa-large-image-gen",
    "https://ofa-beijing.oss-cn-beijing.aliyuncs.com/checkpoints/refcocog_large_best.pt":
        "ofa-large-refcocog",
    "https://huggingface.co/OFA-Sys/ofa-tiny": "ofa-tiny-hf",
}


@pytest.mark.parametrize("name,canonical", sorted(KNOWN.items()))
def test_resolve_known_names(name, canonical):
    assert P.resolve(name).name == canonical


def test_every_official_fairseq_name_is_registered():
    names = [f"ofa_{s}.pt" for s in P.SIZES] + [
        "caption_huge_best.pt", "vqa_huge_best.pt",
        "caption_large_best_clean.pt", "caption_stage1_best.pt", "refcoco_large_best.pt",
        "refcocoplus_large_best.pt", "refcocog_large_best.pt", "vqa_large_best.pt",
        "snli_ve_large_best.pt", "imagenet_1k_large_best.pt", "gigaword_large_best.pt",
        "caption_base_best.pt", "refcoco_base_best.pt", "refcocoplus_base_best.pt",
        "refcocog_base_best.pt", "vqa_base_best.pt", "snli_ve_base_best.pt",
        "image_gen_base_best.pt", "image_gen_large_best.zip"]
    chinese = [f"{n}_{s}.pt" for s in ("base", "large") for n in (
        "ofa_cn", "caption_cn", "refcoco_cn", "refcocoplus_cn", "refcocog_cn", "ofa_cn_ocr")]
    for filename in names + chinese:
        entry = P.resolve(filename)
        assert entry.format == "fairseq"
        assert entry.vocab == ("bert_cn" if filename in chinese else "bpe")
        assert entry.files == (P.RemoteFile(P.OFFICIAL_BASE_URL + filename, filename),)
    assert len(P.list_models(format="fairseq")) == len(names) + len(chinese)
    assert P.resolve("ofa_cn_ocr_base.pt").task == "ocr"
    assert P.resolve("refcocog_cn_large").task == "ground"


def test_entries_are_consistent():
    for name, m in P.REGISTRY.items():
        assert m.name == name and m.task in P.TASKS
        assert m.description
        if m.bundled is not None:  # shipped in the package: nothing to download
            assert m.format == "native" and m.files == () and m.path.is_dir()
            assert m.hub_repo is None
            continue
        assert m.size in P.SIZES and m.path is None
        assert all(f.url.startswith("https://") and f.url.endswith("/" + f.filename)
                   for f in m.files)
        if m.format == "hf":
            assert m.vocab == "bundled"
            assert [f.filename for f in m.files] == ["config.json", "vocab.json", "merges.txt",
                                                     "pytorch_model.bin"]
            assert m.weights.filename == "pytorch_model.bin"
            assert all(f.url.startswith(P.HF_BASE_URL + "OFA-Sys/ofa-") for f in m.files)
            assert m.hub_repo == (m.aliases[0], "main")
        else:
            assert m.vocab == ("bert_cn" if "-cn-" in m.name else "bpe") and len(m.files) == 1
        for f in m.files:  # nothing invented: only mmpretrain's name-encoded prefixes
            assert f.sha256 is None and f.size is None
            if m.format == "mmpretrain":
                assert f.url.startswith(P.MMPRETRAIN_BASE_URL)
                assert f.sha256_prefix and f.filename.endswith(f"-{f.sha256_prefix}.pth")
            else:
                assert f.sha256_prefix is None
        with pytest.raises(AttributeError):
            m.name = "x"  # frozen


def test_ema_choice():
    assert P.resolve("vqa_large_best").ema is None  # EMA when present (official --ema-eval)
    assert P.resolve("caption_base_best").ema is False
    assert P.resolve("ofa-base-hf").ema is None


def test_vocab_files():
    assert [f.filename for f in P.VOCAB_FILES] == ["encoder.json", "vocab.bpe", "dict.txt"]
    assert all(f.url == P.BPE_BASE_URL + f.filename for f in P.VOCAB_FILES)
    assert P.BPE_BASE_URL == "https://raw.githubusercontent.com/OFA-Sys/OFA/main/utils/BPE/"


def test_vocab_hashes_match_the_reference_copy(bpe_dir):
    import hashlib

    for f in P.VOCAB_FILES:
        data = (bpe_dir / f.filename).read_bytes()
        if f.sha256 is not None:
            assert hashlib.sha256(data).hexdigest() == f.sha256
        if f.size is not None:
            assert len(data) == f.size


def test_unknown_name_suggests_close_matches():
    with pytest.raises(InputError) as e:
        P.resolve("caption_base_bst")
    assert "did you mean" in str(e.value) and "ofa-base-caption" in str(e.value)
    with pytest.raises(InputError, match="ofa-large-vqa"):
        P.resolve("ofa-large-vq")
    with pytest.raises(InputError, match="list_models"):
        P.resolve("something else entirely")
    with pytest.raises(InputError):
        P.resolve("")


@pytest.mark.parametrize("name", ["bart_base.pt", "ofa_tiny_plaintext"])
def test_unsupported_names_explain_why(name):
    with pytest.raises(InputError, match="not supported") as e:
        P.resolve(name)
    assert P.OFFICIAL_BASE_URL in str(e.value)


def test_tasks_are_the_task_tables_names():
    from ofa.tasks import TASKS as TABLE

    # three values are no table task: pre-trained, several tasks at once, text-to-image
    assert set(P.TASKS) - set(TABLE) == {"pretrained", "multitask"}
    assert set(P.LEGACY_TASKS.values()) <= set(TABLE)
    assert {m.task for m in P.REGISTRY.values()} <= set(P.TASKS)
    assert P.resolve("refcocog_large_best").task == "ground"
    assert P.resolve("ofa-base_3rdparty-finetuned_refcoco").task == "ground"
    assert P.resolve("snli_ve_base_best").task == "entail"
    assert P.resolve("imagenet_1k_large_best").task == "classify"
    assert P.resolve("gigaword_large_best").task == "summarize"
    # the dataset still shows where the task name no longer says it
    assert "RefCOCO+" in P.resolve("ofa-base-refcocoplus").description
    assert "SNLI-VE" in P.resolve("ofa-large-snli-ve").description
    assert "ImageNet" in P.resolve("ofa-large-imagenet").description
    assert "Gigaword" in P.resolve("ofa-large-gigaword").description


@pytest.mark.parametrize("old,new", [
    ("refcoco", "ground"), ("refcocoplus", "ground"), ("refcocog", "ground"),
    ("snli_ve", "entail"), ("imagenet", "classify"), ("gigaword", "summarize"),
    ("caption", "caption"), ("vqa", "vqa"), ("ground", "ground"), ("pretrained", "pretrained"),
    ("multitask", None), (None, None)])
def test_canonical_task(old, new):
    assert P.canonical_task(old) == new


def test_list_models_by_task():
    grounding = ["ofa-base-refcoco", "ofa-base-refcoco-mmpretrain", "ofa-base-refcocog",
                 "ofa-base-refcocoplus",
                 *(f"ofa-cn-{s}-refcoco{d}" for s in ("base", "large") for d in ("", "g", "plus")),
                 "ofa-large-refcoco", "ofa-large-refcocog", "ofa-large-refcocoplus"]
    assert P.list_models(task="ground") == grounding
    assert P.list_models(task="refcoco") == grounding  # an earlier version's name
    assert P.list_models(task="entail") == ["ofa-base-snli-ve", "ofa-large-snli-ve"]
    assert P.list_models(task="snli_ve") == P.list_models(task="entail")
    assert P.list_models(task="summarize") == ["ofa-large-gigaword"]
    assert P.list_models(task="multitask") == ["shapes-demo"]
    assert P.list_models(task="generate") == []  # a table task no finetune is for


def test_bundled_demo_entry():
    from ofa.demo import DEMO_DIR, DEMO_NAME

    entry = P.resolve("Shapes_Demo")
    assert entry.name == DEMO_NAME and entry.path == DEMO_DIR
    assert (entry.format, entry.size, entry.vocab) == ("native", "custom", "bundled")
    with pytest.raises(ValueError, match="bundled"):
        _ = entry.weights
    assert P.list_models(format="native") == [DEMO_NAME]
    with pytest.raises(ValueError, match="bundled"):  # a bundled entry lists no files
        P.PretrainedModel(name="x", size="base", task="caption", format="native",
                          files=(P.RemoteFile("https://x/a", "a"),), vocab="bundled",
                          bundled="assets/x")
    with pytest.raises(ValueError, match="bundled"):  # and only a bundled one is native
        P.PretrainedModel(name="x", size="base", task="caption", format="native", files=(),
                          vocab="bundled")


def test_lookup():
    assert P.lookup("caption_base_best") is P.resolve("ofa-base-caption")
    assert P.lookup("someone/their-ofa") is None
    with pytest.raises(InputError, match="not supported"):
        P.lookup("bart_base.pt")
    assert P.lookup("ofa_cn_base.pt") is P.resolve("ofa-cn-base")
    with pytest.raises(InputError, match="non-empty"):
        P.lookup("  ")


def test_hf_entries_name_their_repo():
    with pytest.raises(ValueError, match="resolve/<revision>"):
        P.PretrainedModel(name="x", size="base", task="caption", format="hf",
                          files=(P.RemoteFile("https://example.invalid/a/config.json",
                                              "config.json"),), vocab="bundled")
    entry = P.PretrainedModel(
        name="x", size="base", task="caption", format="hf", vocab="bundled",
        files=(P.RemoteFile("https://huggingface.co/Me/my-ofa/resolve/v2/config.json",
                            "config.json"),))
    assert entry.hub_repo == ("Me/my-ofa", "v2")


def test_list_models():
    everything = P.list_models()
    assert everything == sorted(P.REGISTRY) and len(everything) == len(set(everything))
    assert P.list_models(task="caption", size="base") == [
        "ofa-base-caption", "ofa-base-caption-mmpretrain", "ofa-cn-base-caption"]
    assert P.list_models(task="ocr") == ["ofa-cn-ocr-base", "ofa-cn-ocr-large"]
    assert P.list_models(size="tiny") == ["ofa-tiny", "ofa-tiny-hf"]
    assert P.list_models(size="custom") == ["shapes-demo"]
    assert P.list_models(task="pretrained", format="hf") == [
        f"ofa-{s}-hf" for s in sorted(P.SIZES)]
    assert set(P.list_models(format="mmpretrain")) == {
        "ofa-base-caption-mmpretrain", "ofa-base-refcoco-mmpretrain", "ofa-base-vqa-mmpretrain",
        "ofa-base-mmpretrain"}
    with pytest.raises(InputError, match="unknown task"):
        P.list_models(task="captioning")


def test_register_and_unregister():
    f = P.RemoteFile("https://example.invalid/m.pt", "m.pt", sha256="a" * 64, size=3)
    entry = P.PretrainedModel(name="my-model", size="base", task="caption", format="fairseq",
                              files=(f,), vocab="bpe", aliases=("My_Checkpoint",))
    P.register(entry)
    try:
        assert P.resolve("my-checkpoint") is entry
        assert "my-model" in P.list_models(task="caption")
        with pytest.raises(ValueError, match="already used"):
            P.register(P.PretrainedModel(name="other", size="base", task="caption",
                                         format="fairseq", files=(f,), vocab="bpe",
                                         aliases=("caption_base_best",)))
    finally:
        P.unregister("my_checkpoint")
    with pytest.raises(InputError):
        P.resolve("my-model")


def test_validation():
    with pytest.raises(ValueError):
        P.RemoteFile("https://x/a", "a", sha256="XYZ")
    with pytest.raises(ValueError):
        P.RemoteFile("https://x/a", "a", sha256="ab")  # not 64 digits
    with pytest.raises(ValueError):
        P.PretrainedModel(name="x", size="base", task="caption", format="onnx",
                          files=(P.RemoteFile("https://x/a", "a"),), vocab="bpe")


# ---------------------------------------------------------------------------- text-to-image
def test_image_gen_entries_and_their_components():
    large, base = P.resolve("ofa-large-image-gen"), P.resolve("ofa-base-image-gen")
    assert P.list_models(task="imagine") == ["ofa-base-image-gen", "ofa-large-image-gen"]
    assert P.canonical_task(large.task) == "imagine" == P.canonical_task("image_gen")
    # the bundle, as OFA's evaluate_image_gen.sh lays it out; the vocab comes from openai/CLIP
    assert large.archive == "image_gen_large_best.pt" and large.weights.url.endswith(".zip")
    assert large.component("vqgan").members == ("vqgan/last.ckpt", "vqgan/model.yaml")
    assert large.component("clip").members == ("clip/ViT-B-16.pt",)
    assert large.component("clip").files == (P.CLIP_VOCAB,)
    assert not large.component("vqgan").optional
    # the base file is the model only: OpenAI's CLIP, the large bundle's VQGAN when on disk
    assert base.archive is None and base.weights.filename == "image_gen_base_best.pt"
    vq = base.component("vqgan")
    assert vq.optional and vq.reuse == "ofa-large-image-gen" and "--vqgan" in vq.hint
    assert base.component("clip").files == (P.CLIP_VIT_B16, P.CLIP_VOCAB)
    assert base.component("clip").reuse == "ofa-large-image-gen"
    assert base.component("nothing") is None
    # the OpenAI URL's folder is the file's sha256
    assert P.CLIP_VIT_B16.url.split("/")[-2] == P.CLIP_VIT_B16.sha256
    assert all(m.components == () for m in P.REGISTRY.values() if m.task != "imagine")


def test_clip_vocab_matches_the_imagegen_reader():
    from ofa.imagegen.clip_io import VOCAB_NAME, VOCAB_SHA256

    assert (P.CLIP_VOCAB.filename, P.CLIP_VOCAB.sha256) == (VOCAB_NAME, VOCAB_SHA256)


def test_ofa_models_lists_the_image_gen_entries(capsys):
    from ofa.cli import main

    assert main(["models", "--task", "imagine"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert [r.split()[:2] for r in rows] == [["ofa-base-image-gen", "imagine"],
                                             ["ofa-large-image-gen", "imagine"]]


def test_component_validation():
    f = P.RemoteFile("https://x/m.zip", "m.zip")
    with pytest.raises(ValueError, match="relative"):
        P.Component("vqgan", members=("../last.ckpt",))
    with pytest.raises(ValueError, match="relative"):
        P.Component("vqgan", members=("/abs/last.ckpt",))
    with pytest.raises(ValueError, match="folder"):
        P.Component("../up", files=(f,))
    with pytest.raises(ValueError, match="same name"):
        P.Component("clip", members=("a/m.zip",), files=(f,))
    with pytest.raises(ValueError, match="needs"):
        P.Component("clip")
    kw = dict(name="x", size="base", task="imagine", format="fairseq", files=(f,),
              vocab="bpe")
    with pytest.raises(ValueError, match="archive"):  # members need a bundle
        P.PretrainedModel(**kw, components=(P.Component("vqgan", members=("last.ckpt",)),))
    with pytest.raises(ValueError, match="share"):
        P.PretrainedModel(**kw, archive="m.pt", components=(
            P.Component("clip", members=("a",)), P.Component("clip", members=("b",))))
    with pytest.raises(ValueError, match="own entry"):
        P.PretrainedModel(**kw, components=(P.Component("clip", reuse="x"),))
    with pytest.raises(ValueError, match="archive"):
        P.PretrainedModel(**kw, archive="sub/m.pt")
