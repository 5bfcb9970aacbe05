"""Registry of the published OFA checkpoints: where to download them and how to read them.

Every entry is a :class:`PretrainedModel` with a short *canonical name*; the names users already
know from the official README, mmpretrain and the HuggingFace hub resolve to the same entry.

Naming scheme (canonical names, all lower case):

* ``ofa-<size>``: the official pretrained fairseq checkpoint ``ofa_<size>.pt``
  (sizes ``tiny``, ``medium``, ``base``, ``large``, ``huge``).
* ``ofa-<size>-<task>``: an official fine-tuned fairseq checkpoint, e.g. ``ofa-base-caption``
  (``caption_base_best.pt``), ``ofa-large-vqa``, ``ofa-large-snli-ve``, ``ofa-large-imagenet``,
  ``ofa-base-image-gen``. ``ofa-large-caption`` is the final large caption finetune
  ``caption_large_best_clean.pt``; ``ofa-large-caption-stage1`` is ``caption_stage1_best.pt``.
* ``<name>-mmpretrain``: mmpretrain's converted OFA-Base weights, e.g.
  ``ofa-base-caption-mmpretrain``; ``ofa-base-mmpretrain`` is its converted pretrained model
  (mmpretrain calls it ``ofa-base_3rdparty-zeroshot_vqa``).
* ``<name>-hf``: the HF-transformers port on the hub, e.g. ``ofa-base-hf`` (``OFA-Sys/ofa-base``),
  ``ofa-large-caption-hf`` (``OFA-Sys/ofa-large-caption``); downloaded through ``huggingface_hub``
  (its cache, ``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, ``HF_TOKEN``).
* ``shapes-demo``: the embedded demo model, a native folder inside the package (``bundled``):
  nothing to download.

``task`` is the name of the task table (:data:`ofa.tasks.TASKS`) a checkpoint was fine-tuned
for: ``ground`` for the RefCOCO/RefCOCO+/RefCOCOg finetunes, ``entail`` for SNLI-VE,
``classify`` for ImageNet-1K, ``summarize`` for Gigaword (the dataset shows in the description).
Two values are not table tasks: ``pretrained`` (the pre-trained multi-task checkpoints, prompted
zero-shot) and ``multitask`` (fine-tuned on several table tasks at once: the demo model). Native
folders converted by earlier versions store the dataset names (``refcoco``, ``snli_ve``, ...,
``image_gen`` for text-to-image); :func:`canonical_task` maps them.

Aliases: the official file name with and without its extension (``caption_base_best.pt``,
``caption_base_best``), mmpretrain's model name and file name
(``ofa-base_3rdparty-finetuned_caption``), the hub repo id (``OFA-Sys/ofa-base``) and the
download URL of the weights. Look-ups ignore case and treat ``_`` and ``-`` alike.

Hashes and sizes are recorded only where they are known for certain: the official and HF files
have none published, so they are ``None``. mmpretrain file names end with the first 8 hex digits
of the file's sha256 (OpenMMLab's ``publish_model``), kept as ``sha256_prefix`` and verified.

Weights choice (``ema``, passed to ``checkpoints.read_checkpoint``): VQA finetunes and the
pretrained models use the EMA weights when the file has them (``None``; the official VQA
evaluation uses ``--ema-eval``, mmpretrain's converter prefers EMA); the other official finetunes
use their regular weights (``False``), as the official evaluation scripts do.

Text-to-image entries carry *components* (:class:`Component`): what generating images needs
beside the OFA weights, placed as subfolders of the native folder, where
:meth:`ofa.OFA.imagine` looks for them (``vqgan/``: the VQGAN image tokenizer, ``clip/``: the
CLIP reranker and its BPE vocabulary). They are fetched with the entry and moved into place as
published, never converted. A component comes from one or more of:

* ``members``: files inside the entry's zip bundle (``archive``), found by their path suffix
  wherever the zip puts them (``vqgan/last.ckpt`` matches ``checkpoints/vqgan/last.ckpt``);
* ``files``: downloaded files (:class:`RemoteFile`);
* ``reuse``: another entry whose component of the same folder is copied when it is already on
  disk (no download). A component with nothing but ``reuse`` is optional: while it is missing
  the model loads, and ``hint`` says how to supply it.

``ofa-large-image-gen`` is OFA's zip bundle ``image_gen_large_best.zip`` (the OFA-Large
finetune ``image_gen_large_best.pt``, ``vqgan/`` and ``clip/ViT-B-16.pt``, as the official
``run_scripts/image_gen/evaluate_image_gen.sh`` uses them), plus CLIP's BPE vocabulary from
openai/CLIP. ``ofa-base-image-gen`` (``image_gen_base_best.pt``: the model only) gets OpenAI's
CLIP ViT-B/16 and its vocabulary; its VQGAN, the same ``vqgan_gumbel_f8`` as in the large bundle
(no stable download of its own exists), is reused from ``ofa-large-image-gen`` once that was
fetched; until then pass one yourself (``vqgan=PATH``, ``--vqgan``).

The Chinese checkpoints (``ofa-cn-*``: pretrained, MUGE captions, the Chinese RefCOCO/+/g, OFA-OCR)
read the BERT-Chinese vocabulary (``vocab="bert_cn"``, :data:`VOCAB_FILES_CN`). Not supported
(``resolve`` explains why): the text-only LM initialisations (``*_plaintext.pt``,
``bart_*.pt``).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .errors import InputError

__all__ = [
    "BPE_BASE_URL",
    "CLIP_VIT_B16",
    "CLIP_VOCAB",
    "Component",
    "FORMATS",
    "HF_BASE_URL",
    "MMPRETRAIN_BASE_URL",
    "OFFICIAL_BASE_URL",
    "REGISTRY",
    "SIZES",
    "TASKS",
    "UNSUPPORTED",
    "VOCAB_FILES",
    "VOCAB_FILES_CN",
    "VOCAB_SETS",
    "PretrainedModel",
    "RemoteFile",
    "canonical_task",
    "list_models",
    "lookup",
    "register",
    "resolve",
    "unregister",
]

OFFICIAL_BASE_URL = "https://ofa-beijing.oss-cn-beijing.aliyuncs.com/checkpoints/"
MMPRETRAIN_BASE_URL = "https://download.openmmlab.com/mmclassification/v1/ofa/"
HF_BASE_URL = "https://huggingface.co/"
BPE_BASE_URL = "https://raw.githubusercontent.com/OFA-Sys/OFA/main/utils/BPE/"
BERT_CN_BASE_URL = "https://raw.githubusercontent.com/OFA-Sys/OFA/main/utils/BERT_CN_dict/"

SIZES = ("tiny", "medium", "base", "large", "huge")
#: an entry's ``task``: the task table's names (ofa.tasks.TASKS; "generate" has no finetune of
#: its own) plus three that are no table task (module doc)
TASKS = ("pretrained", "multitask", "caption", "vqa", "ground", "entail", "classify",
         "summarize", "imagine", "ocr")
#: the dataset names earlier versions used as tasks -> the task table's name
LEGACY_TASKS = {"refcoco": "ground", "refcocoplus": "ground", "refcocog": "ground",
                "snli_ve": "entail", "imagenet": "classify", "gigaword": "summarize",
                "image_gen": "imagine"}
FORMATS = ("fairseq", "hf", "mmpretrain", "native")
VOCABS = ("bpe", "bert_cn", "bundled")
PACKAGE_DIR = Path(__file__).resolve().parent
_HUB_FILE_URL = re.compile(r"^https://huggingface\.co/([^/]+/[^/]+)/resolve/([^/]+)/[^/]+$")

_HEX = re.compile(r"^[0-9a-f]+$")
_FOLDER = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


@dataclass(frozen=True)
class RemoteFile:
    """One downloadable file. ``sha256``/``size`` are ``None`` where nobody published them."""

    url: str
    filename: str
    sha256: str | None = None
    size: int | None = None
    sha256_prefix: str | None = None  # leading hex digits of the sha256 (mmpretrain names)

    def __post_init__(self) -> None:
        for label, value, length in (("sha256", self.sha256, 64),
                                     ("sha256_prefix", self.sha256_prefix, None)):
            if value is None:
                continue
            if not _HEX.match(value) or (length and len(value) != length) or len(value) > 64:
                raise ValueError(f"{self.filename}: {label} must be lower-case hex, got {value!r}")
        if self.size is not None and self.size < 0:
            raise ValueError(f"{self.filename}: negative size {self.size}")
        if not self.filename or "/" in self.filename or "\\" in self.filename:
            raise ValueError(f"bad file name {self.filename!r}")


def _member_ok(name: str) -> bool:
    """A relative posix path without ``.``/``..`` parts or empty ones (``vqgan/last.ckpt``)."""
    parts = name.split("/")
    return bool(name) and "\\" not in name and all(p not in ("", ".", "..") for p in parts)


@dataclass(frozen=True)
class Component:
    """A part of an entry that is no OFA weights (a VQGAN, CLIP): the subfolder ``folder`` of
    its native folder, filled once, as published (module doc)."""

    folder: str  # subfolder of the native folder: 'vqgan', 'clip'
    members: tuple[str, ...] = ()  # files in the entry's archive, as path suffixes
    files: tuple[RemoteFile, ...] = ()  # downloaded files
    reuse: str | None = None  # an entry whose component ``folder`` is copied when on disk
    hint: str = ""  # how to supply it while it is missing (optional components)

    def __post_init__(self) -> None:
        if not _FOLDER.match(self.folder):
            raise ValueError(f"component folder must match [a-z0-9][a-z0-9_-]*, got "
                             f"{self.folder!r}")
        bad = [m for m in self.members if not _member_ok(m)]
        if bad:
            raise ValueError(f"{self.folder}: archive members are relative paths without "
                             f"'..', got {bad[0]!r}")
        names = [m.rsplit("/", 1)[-1] for m in self.members] + [f.filename for f in self.files]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.folder}: two files would have the same name")
        if not (self.members or self.files or self.reuse):
            raise ValueError(f"{self.folder}: a component needs members, files or reuse")

    @property
    def optional(self) -> bool:
        """Nothing to download: present only when ``reuse`` finds it on disk."""
        return not (self.members or self.files)


@dataclass(frozen=True)
class PretrainedModel:
    """A published checkpoint: what it is, its files, and how to read it."""

    name: str  # canonical name, also the cache folder name
    size: str  # 'tiny' .. 'huge' ('custom' for the demo model)
    task: str  # one of TASKS
    format: str  # 'fairseq' | 'hf' | 'mmpretrain' | 'native' (bundled entries only)
    files: tuple[RemoteFile, ...]
    # 'bpe': needs VOCAB_FILES; 'bert_cn': needs VOCAB_FILES_CN (the Chinese checkpoints);
    # 'bundled': the files ship their own vocabulary
    vocab: str
    aliases: tuple[str, ...] = ()
    ema: bool | None = None  # passed to checkpoints.read_checkpoint (None: EMA when present)
    description: str = ""
    # a native folder inside the ofa package (posix path, e.g. 'assets/shapes-demo'): the
    # model ships with the package and ``files`` is empty
    bundled: str | None = None
    # the weights file is a zip bundle: the OFA checkpoint's file name inside it (found at
    # any depth); the other files of the bundle are components' members
    archive: str | None = None
    # what text-to-image needs beside the weights (Component; module doc)
    components: tuple[Component, ...] = ()

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"{self.name}: format must be one of {FORMATS}, got {self.format!r}")
        if self.vocab not in VOCABS:
            raise ValueError(f"{self.name}: vocab must be one of {VOCABS}, got {self.vocab!r}")
        if (self.bundled is None) == (self.format == "native"):
            raise ValueError(f"{self.name}: a bundled entry is a native folder and only it is")
        if self.bundled is not None and (self.files or self.vocab != "bundled"):
            raise ValueError(f"{self.name}: a bundled entry has no files and its own vocab")
        if self.bundled is None and not self.files:
            raise ValueError(f"{self.name}: no files")
        if self.format == "hf" and not all(_HUB_FILE_URL.match(f.url) for f in self.files):
            raise ValueError(f"{self.name}: HF entries name files as "
                             "https://huggingface.co/<owner>/<repo>/resolve/<revision>/<file>")
        if not re.match(r"^[a-z0-9][a-z0-9._-]*$", self.name):
            raise ValueError(f"{self.name!r}: canonical names are lower case [a-z0-9._-]")
        if self.archive is not None and (self.format != "fairseq" or not _member_ok(
                self.archive) or "/" in self.archive or len(self.files) != 1):
            raise ValueError(f"{self.name}: an archive entry is one fairseq zip whose "
                             f"checkpoint is named by its file name, got {self.archive!r}")
        folders = [c.folder for c in self.components]
        if len(set(folders)) != len(folders):
            raise ValueError(f"{self.name}: two components share a folder")
        if self.components and (self.bundled is not None or self.format == "hf"):
            raise ValueError(f"{self.name}: only downloaded fairseq/mmpretrain entries have "
                             "components")
        if any(c.members for c in self.components) and self.archive is None:
            raise ValueError(f"{self.name}: components with archive members need an archive")
        if any(c.reuse == self.name for c in self.components):
            raise ValueError(f"{self.name}: a component cannot reuse its own entry")

    def component(self, folder: str) -> Component | None:
        """The component placed as ``folder`` (``vqgan``, ``clip``), or None."""
        return next((c for c in self.components if c.folder == folder), None)

    @property
    def weights(self) -> RemoteFile:
        """The weights file (``pytorch_model.bin`` for HF repos, else the only file)."""
        if self.bundled is not None:
            raise ValueError(f"{self.name} is bundled with the package: it has no remote files")
        if self.format == "hf":
            return next((f for f in self.files if f.filename in
                         ("pytorch_model.bin", "model.safetensors")), self.files[-1])
        return self.files[0]

    @property
    def path(self) -> Path | None:
        """The package folder of a bundled entry; None for the others."""
        return None if self.bundled is None else PACKAGE_DIR.joinpath(*self.bundled.split("/"))

    @property
    def hub_repo(self) -> tuple[str, str] | None:
        """``(repo id, revision)`` of an HF entry, from its file URLs; None for the others."""
        if self.format != "hf":
            return None
        m = _HUB_FILE_URL.match(self.files[0].url)
        assert m is not None  # __post_init__ checked it
        return m.group(1), m.group(2)


# ---------------------------------------------------------------------------- the entries
#: OpenAI's CLIP ViT-B/16 (github.com/openai/CLIP clip/clip.py _MODELS; the URL's folder is the
#: file's sha256), the reranker of OFA's text-to-image evaluation
CLIP_VIT_B16 = RemoteFile(
    "https://openaipublic.azureedge.net/clip/models/"
    "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt",
    "ViT-B-16.pt", sha256="5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f")
#: CLIP's BPE vocabulary (github.com/openai/CLIP clip/bpe_simple_vocab_16e6.txt.gz), which no
#: CLIP weights file holds
CLIP_VOCAB = RemoteFile(
    "https://raw.githubusercontent.com/openai/CLIP/main/clip/bpe_simple_vocab_16e6.txt.gz",
    "bpe_simple_vocab_16e6.txt.gz",
    sha256="924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a", size=1356917)
_LARGE_IMAGE_GEN = "ofa-large-image-gen"
_BASE_VQGAN_HINT = (
    "ofa-base-image-gen has no VQGAN of its own (image_gen_base_best.pt is the OFA model "
    "only): pass vqgan=PATH (--vqgan PATH), a taming vqgan_gumbel_f8 folder, or fetch "
    f"{_LARGE_IMAGE_GEN} once (e.g. ofa.load('{_LARGE_IMAGE_GEN}')): its bundle holds the "
    "same VQGAN, which ofa-base-image-gen then reuses")


def _official(name: str, filename: str, size: str, task: str, description: str,
              ema: bool | None = False, vocab: str = "bpe", **more) -> PretrainedModel:
    stem = filename.rsplit(".", 1)[0]
    aliases = (filename, stem) + ((more["archive"],) if "archive" in more else ())
    return PretrainedModel(
        name=name, size=size, task=task, format="fairseq",
        files=(RemoteFile(OFFICIAL_BASE_URL + filename, filename),),
        vocab=vocab, aliases=aliases, ema=ema,
        description=description + f" (official fairseq {filename})", **more)


def _mmpretrain(name: str, mm_name: str, filename: str, task: str,
                description: str) -> PretrainedModel:
    stem = filename.rsplit(".", 1)[0]
    prefix = stem.rsplit("-", 1)[1]
    return PretrainedModel(
        name=name, size="base", task=task, format="mmpretrain",
        files=(RemoteFile(MMPRETRAIN_BASE_URL + filename, filename, sha256_prefix=prefix),),
        vocab="bpe", aliases=(mm_name, filename, stem), ema=None,
        description=description + f" (mmpretrain {mm_name})")


def _hf(name: str, repo: str, size: str, task: str, description: str) -> PretrainedModel:
    # the files as the repo publishes them; ofa.hub fetches them with huggingface_hub (taking
    # model.safetensors instead of pytorch_model.bin where a repo has it)
    files = tuple(RemoteFile(f"{HF_BASE_URL}{repo}/resolve/main/{f}", f)
                  for f in ("config.json", "vocab.json", "merges.txt", "pytorch_model.bin"))
    return PretrainedModel(
        name=name, size=size, task=task, format="hf", files=files, vocab="bundled",
        aliases=(repo, f"{HF_BASE_URL}{repo}"), ema=None,
        description=description + f" (HF hub {repo})")


_ENTRIES: list[PretrainedModel] = [
    # pretrained (EMA when present: matches mmpretrain's converter)
    *(_official(f"ofa-{s}", f"ofa_{s}.pt", s, "pretrained",
                f"OFA-{s.capitalize()} pretrained", ema=None) for s in SIZES),
    # huge finetunes
    _official("ofa-huge-caption", "caption_huge_best.pt", "huge", "caption",
              "OFA-Huge finetuned on COCO captions"),
    _official("ofa-huge-vqa", "vqa_huge_best.pt", "huge", "vqa",
              "OFA-Huge finetuned on VQAv2", ema=None),
    # large finetunes
    _official("ofa-large-caption", "caption_large_best_clean.pt", "large", "caption",
              "OFA-Large finetuned on COCO captions, final checkpoint"),
    _official("ofa-large-caption-stage1", "caption_stage1_best.pt", "large", "caption",
              "OFA-Large finetuned on COCO captions, stage-1 checkpoint"),
    _official("ofa-large-refcoco", "refcoco_large_best.pt", "large", "ground",
              "OFA-Large finetuned on RefCOCO (visual grounding)"),
    _official("ofa-large-refcocoplus", "refcocoplus_large_best.pt", "large", "ground",
              "OFA-Large finetuned on RefCOCO+ (visual grounding)"),
    _official("ofa-large-refcocog", "refcocog_large_best.pt", "large", "ground",
              "OFA-Large finetuned on RefCOCOg (visual grounding)"),
    _official("ofa-large-vqa", "vqa_large_best.pt", "large", "vqa",
              "OFA-Large finetuned on VQAv2", ema=None),
    _official("ofa-large-snli-ve", "snli_ve_large_best.pt", "large", "entail",
              "OFA-Large finetuned on SNLI-VE (visual entailment)"),
    _official("ofa-large-imagenet", "imagenet_1k_large_best.pt", "large", "classify",
              "OFA-Large finetuned on ImageNet-1K"),
    _official("ofa-large-gigaword", "gigaword_large_best.pt", "large", "summarize",
              "OFA-Large finetuned on Gigaword (text summarisation)"),
    _official(_LARGE_IMAGE_GEN, "image_gen_large_best.zip", "large", "imagine",
              "OFA-Large finetuned on COCO text-to-image, with the VQGAN decoder and the CLIP "
              "ViT-B/16 reranker of the official evaluation (bundle of "
              "image_gen_large_best.pt, vqgan/, clip/)",
              archive="image_gen_large_best.pt",
              components=(Component("vqgan", members=("vqgan/last.ckpt", "vqgan/model.yaml")),
                          Component("clip", members=("clip/ViT-B-16.pt",),
                                    files=(CLIP_VOCAB,)))),
    # base finetunes
    _official("ofa-base-caption", "caption_base_best.pt", "base", "caption",
              "OFA-Base finetuned on COCO captions"),
    _official("ofa-base-refcoco", "refcoco_base_best.pt", "base", "ground",
              "OFA-Base finetuned on RefCOCO (visual grounding)"),
    _official("ofa-base-refcocoplus", "refcocoplus_base_best.pt", "base", "ground",
              "OFA-Base finetuned on RefCOCO+ (visual grounding)"),
    _official("ofa-base-refcocog", "refcocog_base_best.pt", "base", "ground",
              "OFA-Base finetuned on RefCOCOg (visual grounding)"),
    _official("ofa-base-vqa", "vqa_base_best.pt", "base", "vqa",
              "OFA-Base finetuned on VQAv2", ema=None),
    _official("ofa-base-snli-ve", "snli_ve_base_best.pt", "base", "entail",
              "OFA-Base finetuned on SNLI-VE (visual entailment)"),
    _official("ofa-base-image-gen", "image_gen_base_best.pt", "base", "imagine",
              "OFA-Base finetuned on COCO text-to-image, with the CLIP ViT-B/16 reranker; the "
              f"VQGAN decoder is not part of it: reused from {_LARGE_IMAGE_GEN} once fetched, "
              "else pass --vqgan",
              components=(Component("vqgan", reuse=_LARGE_IMAGE_GEN, hint=_BASE_VQGAN_HINT),
                          Component("clip", files=(CLIP_VIT_B16, CLIP_VOCAB),
                                    reuse=_LARGE_IMAGE_GEN))),
    # mmpretrain conversions of OFA-Base
    _mmpretrain("ofa-base-caption-mmpretrain", "ofa-base_3rdparty-finetuned_caption",
                "ofa-base_3rdparty_coco-caption_20230418-de18914e.pth", "caption",
                "OFA-Base COCO captions, converted from caption_base_best.pt"),
    _mmpretrain("ofa-base-refcoco-mmpretrain", "ofa-base_3rdparty-finetuned_refcoco",
                "ofa-base_3rdparty_refcoco_20230418-2797d3ab.pth", "ground",
                "OFA-Base RefCOCO grounding, converted from refcoco_base_best.pt"),
    _mmpretrain("ofa-base-vqa-mmpretrain", "ofa-base_3rdparty-finetuned_vqa",
                "ofa-base_3rdparty_coco-vqa_20230418-f38539a5.pth", "vqa",
                "OFA-Base VQAv2, converted from the official VQA finetune"),
    _mmpretrain("ofa-base-mmpretrain", "ofa-base_3rdparty-zeroshot_vqa",
                "ofa-base_3rdparty_pretrain_20230418-dccfc07f.pth", "pretrained",
                "OFA-Base pretrained (used for zero-shot VQA), converted from ofa_base.pt"),
    # Chinese (OFA-Sys/OFA checkpoints_cn.md): the BERT-Chinese vocabulary, 30,325 ids
    *(e for sz in ("base", "large") for e in (
        _official(f"ofa-cn-{sz}", f"ofa_cn_{sz}.pt", sz, "pretrained",
                  f"OFA-CN-{sz.capitalize()} pretrained (Chinese)", ema=None, vocab="bert_cn"),
        _official(f"ofa-cn-{sz}-caption", f"caption_cn_{sz}.pt", sz, "caption",
                  f"OFA-CN-{sz.capitalize()} finetuned on MUGE captions (Chinese)",
                  vocab="bert_cn"),
        *(_official(f"ofa-cn-{sz}-{data}", f"{data}_cn_{sz}.pt", sz, "ground",
                    f"OFA-CN-{sz.capitalize()} finetuned on {title}, translated to Chinese",
                    vocab="bert_cn")
          for data, title in (("refcoco", "RefCOCO"), ("refcocoplus", "RefCOCO+"),
                              ("refcocog", "RefCOCOg"))),
        _official(f"ofa-cn-ocr-{sz}", f"ofa_cn_ocr_{sz}.pt", sz, "ocr",
                  f"OFA-OCR-{sz.capitalize()}: Chinese text recognition, multitask finetuned",
                  vocab="bert_cn"))),
    # HF-transformers port
    *(_hf(f"ofa-{s}-hf", f"OFA-Sys/ofa-{s}", s, "pretrained",
          f"OFA-{s.capitalize()} pretrained, HF-transformers port") for s in SIZES),
    _hf("ofa-large-caption-hf", "OFA-Sys/ofa-large-caption", "large", "caption",
        "OFA-Large finetuned on COCO captions, HF-transformers port"),
    # shipped with the package (ofa.demo.DEMO_DIR); the folder holds its answer list
    PretrainedModel(
        name="shapes-demo", size="custom", task="multitask", format="native", files=(),
        vocab="bundled", bundled="assets/shapes-demo",
        description="the embedded demo model: a 9.6 M-parameter OFA trained on synthetic "
                    "ShapesWorld scenes (caption, vqa, ground, entail, classify); ships with "
                    "the package, nothing to download"),
]

#: canonical name -> entry
REGISTRY: dict[str, PretrainedModel] = {}

#: The official BPE files (GPT-2 ``encoder.json``/``vocab.bpe`` + fairseq ``dict.txt``) that the
#: fairseq and mmpretrain checkpoints need. The two GPT-2 files are OpenAI's, whose sha256 are
#: widely pinned (e.g. by tiktoken); dict.txt has no published hash.
VOCAB_FILES: tuple[RemoteFile, ...] = (
    RemoteFile(BPE_BASE_URL + "encoder.json", "encoder.json",
               sha256="196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
               size=1042301),
    RemoteFile(BPE_BASE_URL + "vocab.bpe", "vocab.bpe",
               sha256="1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
               size=456318),
    RemoteFile(BPE_BASE_URL + "dict.txt", "dict.txt"),
)
#: The Chinese checkpoints' vocabulary: BERT-Chinese WordPiece (OFA repository
#: utils/BERT_CN_dict/vocab.txt, the bert-base-chinese vocabulary; sha256 as published there and
#: in Chinese-CLIP's identical copy).
VOCAB_FILES_CN: tuple[RemoteFile, ...] = (
    RemoteFile(BERT_CN_BASE_URL + "vocab.txt", "vocab.txt",
               sha256="45bbac6b341c319adc98a532532882e91a9cefc0329aa57bac9ae761c27b291c",
               size=109540),
)
#: an entry's ``vocab`` -> the files it downloads (``bundled`` entries download none)
VOCAB_SETS: dict[str, tuple[RemoteFile, ...]] = {"bpe": VOCAB_FILES, "bert_cn": VOCAB_FILES_CN}

_NOT_OFA = ("a text-only language-model initialisation for pretraining, not an OFA "
            "vision-language model")
#: official names that resolve() refuses, with the reason
UNSUPPORTED: dict[str, str] = {
    **{f"{n}.pt": _NOT_OFA for n in ("ofa_tiny_plaintext", "ofa_medium_plaintext",
                                     "ofa_huge_plaintext", "bart_base", "bart_large")},
}


# ---------------------------------------------------------------------------- look-up
def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


_INDEX: dict[str, str] = {}  # normalised name or alias -> canonical name


def _keys_of(model: PretrainedModel) -> list[str]:
    keys = [model.name, *model.aliases]
    if model.format not in ("hf", "native"):
        keys.append(model.weights.url)
    return list(dict.fromkeys(_key(k) for k in keys))


def register(model: PretrainedModel, *, replace: bool = False) -> PretrainedModel:
    """Add an entry (e.g. your own checkpoint on a private server) to the registry.

    Raises ``ValueError`` when its name or an alias already belongs to another entry, unless
    ``replace`` (which first removes an entry of the same canonical name).
    """
    if replace and model.name in REGISTRY:
        unregister(model.name)
    keys = _keys_of(model)
    clashes = sorted({_INDEX[k] for k in keys if k in _INDEX})
    if clashes:
        raise ValueError(f"{model.name}: name or alias already used by {', '.join(clashes)}")
    REGISTRY[model.name] = model
    for k in keys:
        _INDEX[k] = model.name
    return model


def unregister(name: str) -> PretrainedModel:
    """Remove the entry ``name`` (canonical name or alias) and return it."""
    model = resolve(name)
    del REGISTRY[model.name]
    for k in [k for k, v in _INDEX.items() if v == model.name]:
        del _INDEX[k]
    return model


for _entry in _ENTRIES:
    register(_entry)
del _entry

_UNSUPPORTED_INDEX = {_key(k): n for n in UNSUPPORTED
                      for k in (n, n.rsplit(".", 1)[0], OFFICIAL_BASE_URL + n)}


def lookup(name: str) -> PretrainedModel | None:
    """The entry for a canonical name or any alias (case-insensitive, ``_`` equals ``-``), or
    None when no entry has that name.

    Raises :class:`~ofa.errors.InputError` for a name that is not a string, or that is a
    published checkpoint this package cannot read (the message says why).
    """
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"pretrained model name must be a non-empty string, got {name!r}")
    key = _key(name)
    if key in _INDEX:
        return REGISTRY[_INDEX[key]]
    if key.startswith(("http://", "https://")):  # a URL: try its file name
        base = _key(urlsplit(name.strip()).path.rsplit("/", 1)[-1])
        if base and base in _INDEX:
            return REGISTRY[_INDEX[base]]
    if key in _UNSUPPORTED_INDEX:
        official = _UNSUPPORTED_INDEX[key]
        raise InputError(f"{name!r} is not supported: it is {UNSUPPORTED[official]} "
                         f"({OFFICIAL_BASE_URL}{official})")
    return None


def resolve(name: str) -> PretrainedModel:
    """The entry for a canonical name or any alias (see :func:`lookup`).

    Raises :class:`~ofa.errors.InputError` for an unknown name, suggesting close matches.
    """
    entry = lookup(name)
    if entry is None:
        raise InputError(f"unknown pretrained model {name!r}; {_suggest(_key(name))}")
    return entry


def canonical_task(name: str | None) -> str | None:
    """The task-table name for a task recorded by a registry entry or a native folder.

    Dataset names of earlier versions map to their task (``refcoco``, ``refcocoplus``,
    ``refcocog`` -> ``ground``; ``snli_ve`` -> ``entail``; ``imagenet`` -> ``classify``;
    ``gigaword`` -> ``summarize``; ``image_gen`` -> ``imagine``). ``multitask`` (fine-tuned
    for several tasks, none preferred) gives None, as a model with no recorded task does:
    every task then uses its fine-tuned defaults. Any other name is returned as it is.
    """
    if name is None or name == "multitask":
        return None
    return LEGACY_TASKS.get(name, name)


def _suggest(key: str) -> str:
    candidates = list(_INDEX)
    close = difflib.get_close_matches(key, candidates, n=8, cutoff=0.6)
    names = list(dict.fromkeys(_INDEX[c] for c in close))[:5]
    if names:
        return "did you mean " + ", ".join(names) + "?"
    return ("known names: " + ", ".join(sorted(REGISTRY)[:8]) +
            ", ... (ofa.pretrained.list_models() lists all)")


def list_models(task: str | None = None, size: str | None = None,
                format: str | None = None) -> list[str]:
    """Canonical names, optionally only one task, size and/or format, sorted.

    ``task`` is a name of :data:`TASKS`; an earlier version's dataset name (``refcoco``, ...)
    selects its task, as :func:`canonical_task` maps it.
    """
    if task is not None:
        task = LEGACY_TASKS.get(task, task)
    # every table task is a valid filter, even one no entry is fine-tuned for ("generate")
    for label, value, allowed in (("task", task, (*TASKS, "generate")), ("size", size, SIZES),
                                  ("format", format, FORMATS)):
        if value is not None and value not in allowed and not any(
                getattr(m, label) == value for m in REGISTRY.values()):
            raise InputError(f"unknown {label} {value!r}; choose one of {', '.join(allowed)}")
    return sorted(m.name for m in REGISTRY.values()
                  if (task is None or m.task == task) and (size is None or m.size == size)
                  and (format is None or m.format == format))
