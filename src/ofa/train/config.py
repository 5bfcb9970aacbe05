"""Training configuration: one YAML file, read into dataclasses with clear errors.

Example (``configs/shapes-demo.yaml`` is a complete one)::

    output_dir: runs/my-finetune
    model: {init: ofa-base, image_size: 480, drop_path: 0.1}
    data:
      train: [{path: data/train.jsonl, ratio: 1.0}]
      valid: [{path: data/val.jsonl, limit: 500}]
    batch_size: 8
    max_updates: 10000
    lr: 5.0e-5
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..tokenizer import NUM_CODES
from .featurize import CONSTRAINABLE_TASKS


@dataclass
class ModelSettings:
    init: str | None = None  # checkpoint path or registry name to fine-tune; None: from scratch
    preset: str | None = None  # official size to build from scratch (tiny ... huge)
    # OFAConfig fields: the architecture from scratch, or settings over init's (code_image_size)
    config: dict[str, Any] = field(default_factory=dict)
    image_size: int | None = None  # None: each task's official size
    ema_weights: bool | None = None  # fine-tune from a fairseq file's EMA weights (default yes)
    dropout: float = 0.1
    attention_dropout: float = 0.0
    drop_path: float = 0.1  # encoder and decoder stochastic depth (official fine-tuning 0.1)
    freeze_embeddings: bool = False  # --freeze-encoder/decoder-embedding
    freeze_resnet: bool = False  # the whole ResNet (weights and BatchNorm statistics)
    freeze_batchnorm: bool = False  # official --freeze-resnet: frozen BatchNorm, convs train
    smooth_bins: bool = False  # from scratch: <bin_i> rows start as a smooth code of i
    # from scratch: "bert" = fairseq's N(0, 0.02) for every Linear (official); "fan_in" =
    # N(0, 1/fan_in), which small models need to start using the image quickly
    linear_init: str = "bert"


@dataclass
class DatasetSpec:
    path: str  # records (.jsonl), or an official OFA .tsv file (give its one task in tasks)
    tasks: list[str] | None = None  # keep only these tasks' records
    selected_cols: list[int] | None = None  # .tsv: columns of the task's fields (official)
    ratio: float = 1.0  # share of each training batch (normalised over the datasets)
    limit: int | None = None  # use only the first N records (validation)
    # training curriculum: the dataset is in the mix for updates [from_update, until_update)
    from_update: int = 0
    until_update: int | None = None
    # official answer tries in the loss: VQA targets over data.vqa_answers, entailment over
    # yes / no / maybe, classification over this dataset's labels (other tasks stay free)
    constrain: bool = False
    # official --noise-ratio (Gigaword): this share of the decoder's input tokens after BOS is
    # replaced by random text tokens; the targets stay clean
    decoder_noise: float = 0.0
    # an official pretraining TSV of this kind: pairs, text, image or detection
    # (ofa.data.pretrain_tsv); its rows become the pretraining tasks' samples
    pretrain: str | None = None
    image_size: int | None = None  # this dataset's input size (default: model.image_size)


@dataclass
class LRRestart:
    update: int  # from this update the lr warms up again from 0 ...
    lr: float  # ... to this peak over warmup_updates, then decays to end_lr at max_updates
    warmup_updates: int = 0
    # forget AdamW's moments there, as a fine-tune from the weights would start
    reset_optimizer: bool = False
    # where this decay reaches end_lr (default max_updates): set it to train on past it
    decay_updates: int | None = None


@dataclass
class ScstSettings:
    """Self-critical sequence training (caption stage 2, OFA-Sys/OFA criterions/scst_loss.py):
    the model captions each training image, every caption is rewarded by its CIDEr-D against
    the image's references minus the mean of the image's other captions, and the loss is
    -reward x log p(caption). Official: the 5 beams of beam search (beam 5, at most 16
    tokens, no repeated 3-gram) in eval mode."""

    df: str = ""  # document frequencies of the reward (`ofa data cider-df`): required
    samples: int = 5  # captions per image (beam size, or independent samples)
    search: str = "beam"  # "beam" (official) or "sampling"
    max_len_b: int = 16
    no_repeat_ngram_size: int = 3
    top_k: int = 0  # sampling: keep the k most likely tokens (0 = all)
    temperature: float = 1.0  # sampling


@dataclass
class DataSettings:
    train: list[DatasetSpec] = field(default_factory=list)
    valid: list[DatasetSpec] = field(default_factory=list)
    vqa_answers: str | None = None  # answers (one per line, or ans2label .pkl): VQA's trie
    # how validation answers VQA over vqa_answers: "beam" (trie-constrained beam search) or
    # "all" (every candidate scored: the official --val-inference-type allcand)
    vqa_valid_mode: str = "beam"
    max_source_length: int = 80
    max_target_length: int = 30
    num_workers: int = 0
    # keep every training image decoded and resized in memory (image_size^2 * 3 bytes each, per
    # process): for datasets that fit in RAM and read each image many times
    cache_images: bool = False
    # pretraining: the folder ITM's negatives come from (all_captions.txt, object.txt,
    # type2ans.json: the official --neg-sample-dir)
    negatives: str | None = None
    # pretraining: keep this many random image patches of each pair batch (official 196)
    sample_patches: int | None = None
    # codebook size of the VQGAN that made the image-code targets (imagine, infilling): code
    # rows are scored over the specials and these codes only (the official VQGAN: 8192)
    image_codes: int = NUM_CODES


@dataclass
class TrainConfig:
    output_dir: str = "runs/ofa"
    tokenizer: str | None = None  # BPE folder; default: the init checkpoint's tokenizer files
    model: ModelSettings = field(default_factory=ModelSettings)
    data: DataSettings = field(default_factory=DataSettings)
    seed: int = 1
    device: str = "auto"  # auto / cpu / cuda
    dtype: str = "fp32"  # fp32 / bf16 / fp16 autocast (fp16 with a gradient scaler)
    batch_size: int = 8  # per process and micro-batch
    update_freq: int = 1  # gradient accumulation steps
    # samples per update over all processes: sets update_freq to global_batch / (batch_size x
    # processes) at the start, so a recipe keeps its batch on any number of GPUs
    global_batch: int | None = None
    max_updates: int = 1000
    # official --max-epoch: train for this many passes over the training records instead
    # (max_updates becomes ceil(max_epochs * records / global batch) once they are read)
    max_epochs: float | None = None
    lr: float = 5e-5
    end_lr: float = 0.0
    power: float = 1.0
    warmup_ratio: float = 0.06
    warmup_updates: int | None = None  # overrides warmup_ratio
    # where the first decay reaches end_lr (fairseq --total-num-update); default max_updates.
    # Restarts decay to max_updates, so a run can add a restart and train on past this.
    decay_updates: int | None = None
    lr_restarts: list[LRRestart] = field(default_factory=list)  # warm restarts, in order
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    clip_norm: float = 1.0
    label_smoothing: float = 0.1
    drop_worst_ratio: float = 0.0
    drop_worst_after: int = 0
    ema_decay: float | None = None  # e.g. 0.9999; None: no EMA
    ema_start: int = 0
    fsdp: bool = False  # shard parameters/optimizer state (large/huge); default DDP
    log_interval: int = 50
    valid_interval: int = 1000
    save_interval: int = 1000
    # metric to keep the best model by, e.g. "ground/acc@0.5"; None: the mean of each validated
    # task's published metric (ofa.tasks.TASKS: CIDEr for captions, on its 0-10 scale)
    keep_best: str | None = None
    valid_batch_size: int = 32
    # also write the scalars to OUTPUT_DIR/tensorboard (the `watch` extra), with this many
    # sample predictions per task and validation (ofa.train.watch)
    tensorboard: bool = False
    tensorboard_samples: int = 4
    scst: ScstSettings | None = None  # CIDEr optimisation instead of cross-entropy
    threads: int | None = None  # CPU threads per process (default: torch's choice)

    @property
    def warmup(self) -> int:
        if self.warmup_updates is not None:
            return self.warmup_updates
        return int(self.warmup_ratio * self.max_updates)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise InputError(f"{where} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise InputError(f"unknown setting(s) in {where}: {', '.join(unknown)}; "
                         f"known: {', '.join(fields)}")
    kwargs = {}
    for name, value in data.items():
        nested = {"model": ModelSettings, "data": DataSettings, "scst": ScstSettings}.get(name)
        if cls is TrainConfig and nested is not None and not (name == "scst" and value is None):
            value = _build(nested, value, f"{where}.{name}")
        elif cls is DataSettings and name in ("train", "valid"):
            if not isinstance(value, list):
                raise InputError(f"{where}.{name} must be a list of datasets")
            value = [_build(DatasetSpec, v, f"{where}.{name}[{i}]") for i, v in enumerate(value)]
        elif cls is TrainConfig and name == "lr_restarts":
            if not isinstance(value, list):
                raise InputError(f"{where}.{name} must be a list of {{update, lr, "
                                 "warmup_updates, reset_optimizer, decay_updates}")
            value = [_build(LRRestart, v, f"{where}.{name}[{i}]") for i, v in enumerate(value)]
        elif name == "betas":
            value = tuple(value)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise InputError(f"{where}: {e}") from None


def _check(cfg: TrainConfig, *, updates_known: bool = True) -> None:
    """Raise one InputError for the first bad setting. With ``updates_known=False``
    (``max_epochs`` given, the data not yet read) the checks against max_updates wait for
    :func:`resolve_epochs`."""
    epochs = cfg.max_epochs
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int | float)
                               or not 0 < epochs < math.inf):
        raise InputError(f"max_epochs must be a positive number, got {epochs!r}")
    positive = {"batch_size": cfg.batch_size, "update_freq": cfg.update_freq,
                "max_updates": cfg.max_updates, "log_interval": cfg.log_interval,
                "valid_interval": cfg.valid_interval, "save_interval": cfg.save_interval,
                "valid_batch_size": cfg.valid_batch_size}
    if cfg.decay_updates is not None:
        positive["decay_updates"] = cfg.decay_updates
    if cfg.global_batch is not None:
        positive["global_batch"] = cfg.global_batch
    for name, value in positive.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(cfg.tensorboard, bool):
        raise InputError(f"tensorboard must be true or false, got {cfg.tensorboard!r}")
    samples = cfg.tensorboard_samples
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 0:
        raise InputError(f"tensorboard_samples must be a non-negative integer, got {samples!r}")
    if not (isinstance(cfg.lr, int | float) and cfg.lr > 0):
        raise InputError(f"lr must be a positive number, got {cfg.lr!r}")
    previous = 0
    last = cfg.max_updates if updates_known else math.inf  # updates bound the restarts
    for i, r in enumerate(cfg.lr_restarts):
        where = f"lr_restarts[{i}]"
        if isinstance(r.update, bool) or not isinstance(r.update, int) or not (
                previous < r.update < last):
            raise InputError(f"{where}.update must be an integer above {previous} and below "
                             f"max_updates ({last}), got {r.update!r}")
        if isinstance(r.lr, bool) or not (isinstance(r.lr, int | float) and r.lr > 0):
            raise InputError(f"{where}.lr must be a positive number, got {r.lr!r}")
        if isinstance(r.warmup_updates, bool) or not isinstance(r.warmup_updates, int) or not (
                0 <= r.warmup_updates < last - r.update):
            raise InputError(f"{where}.warmup_updates must be an integer in [0, "
                             f"{last - r.update}), got {r.warmup_updates!r}")
        if r.decay_updates is not None and (
                isinstance(r.decay_updates, bool) or not isinstance(r.decay_updates, int)
                or not r.update + r.warmup_updates < r.decay_updates <= last):
            raise InputError(f"{where}.decay_updates must be an integer above "
                             f"{r.update + r.warmup_updates} (update + warmup_updates) and at "
                             f"most max_updates ({last}), got {r.decay_updates!r}")
        if not isinstance(r.reset_optimizer, bool):
            raise InputError(f"{where}.reset_optimizer must be true or false, got "
                             f"{r.reset_optimizer!r}")
        previous = r.update
    if not 0 <= cfg.label_smoothing < 1 or not 0 <= cfg.drop_worst_ratio < 1:
        raise InputError("label_smoothing and drop_worst_ratio must lie in [0, 1)")
    if cfg.dtype not in ("fp32", "bf16", "fp16"):
        raise InputError(f"dtype must be fp32, bf16 or fp16, got {cfg.dtype!r}")
    if cfg.ema_decay is not None and not 0 < cfg.ema_decay < 1:
        raise InputError(f"ema_decay must lie in (0, 1), got {cfg.ema_decay!r}")
    codes = cfg.data.image_codes
    if type(codes) is not int or not 1 <= codes <= NUM_CODES:
        raise InputError(f"data.image_codes must be an integer in [1, {NUM_CODES}] (the VQGAN's "
                         f"codebook size), got {codes!r}")
    if not cfg.data.train:
        raise InputError("data.train lists no dataset")
    if cfg.data.vqa_valid_mode not in ("beam", "all"):
        raise InputError(f"data.vqa_valid_mode must be beam or all, got "
                         f"{cfg.data.vqa_valid_mode!r}")
    if cfg.data.vqa_valid_mode == "all" and not cfg.data.vqa_answers:
        raise InputError("data.vqa_valid_mode all scores the candidate answers: give "
                         "data.vqa_answers")
    from ..data.records import TASK_NAMES

    _check_pretrain(cfg)
    for spec in [*cfg.data.train, *cfg.data.valid]:
        if spec.pretrain is not None:
            continue
        if spec.path.endswith(".tsv") and len(spec.tasks or ()) != 1:
            raise InputError(f"{spec.path}: a TSV file holds one task; name it, e.g. "
                             "tasks: [caption]")
        unknown = sorted(set(spec.tasks or ()) - set(TASK_NAMES))
        if unknown:
            raise InputError(f"{spec.path}: unknown tasks {unknown}; choose from "
                             f"{list(TASK_NAMES)}")
    if any(not (d.ratio > 0) for d in cfg.data.train):
        raise InputError("every training dataset needs a positive ratio")
    for spec in cfg.data.valid:
        if spec.constrain:
            raise InputError(f"{spec.path}: constrain applies to training datasets; validation "
                             "constrains VQA with data.vqa_answers")
        if spec.from_update != 0 or spec.until_update is not None:
            raise InputError(f"{spec.path}: from_update/until_update apply to training datasets "
                             "only; every validation runs on all of data.valid")
        if spec.decoder_noise != 0:
            raise InputError(f"{spec.path}: decoder_noise applies to training datasets only")
    for spec in cfg.data.train:
        noise = spec.decoder_noise
        if isinstance(noise, bool) or not isinstance(noise, int | float) or not 0 <= noise < 1:
            raise InputError(f"{spec.path}: decoder_noise must lie in [0, 1), got {noise!r}")
        if not isinstance(spec.constrain, bool):
            raise InputError(f"{spec.path}: constrain must be true or false, got "
                             f"{spec.constrain!r}")
        if spec.constrain and spec.tasks and not set(spec.tasks) & set(CONSTRAINABLE_TASKS):
            raise InputError(f"{spec.path}: constrain applies to "
                             f"{', '.join(CONSTRAINABLE_TASKS)} records; this dataset has "
                             f"{', '.join(spec.tasks)}")
        start, end = spec.from_update, spec.until_update
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise InputError(f"{spec.path}: from_update must be an integer >= 0, got {start!r}")
        if end is not None and (isinstance(end, bool) or not isinstance(end, int)
                                or end <= start):
            raise InputError(f"{spec.path}: until_update must be an integer above "
                             f"from_update ({start}), got {end!r}")
        if updates_known and start >= cfg.max_updates:
            raise InputError(f"{spec.path}: from_update {start} is not below max_updates "
                             f"{cfg.max_updates}, so the dataset would never be used")
    if cfg.model.init is None and cfg.model.preset is None and not cfg.model.config:
        raise InputError("model needs init (a checkpoint to fine-tune), preset or config")
    if cfg.model.linear_init not in ("bert", "fan_in"):
        raise InputError(f"model.linear_init must be bert or fan_in, got "
                         f"{cfg.model.linear_init!r}")
    if cfg.model.init is None and cfg.tokenizer is None:
        raise InputError("a model trained from scratch needs tokenizer: a folder with "
                         "encoder.json + vocab.bpe + dict.txt")
    if cfg.scst is not None:
        _check_scst(cfg)


def _check_pretrain(cfg: TrainConfig) -> None:
    from ..data.pretrain_tsv import PRETRAIN_FILES

    for spec in cfg.data.valid:
        if spec.pretrain is not None:
            raise InputError(f"{spec.path}: pretraining files train only; validate with the "
                             "tasks' own records")
    for spec in [*cfg.data.train, *cfg.data.valid]:
        size = spec.image_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or
                                 size < 16 or size % 16):
            raise InputError(f"{spec.path}: image_size must be a positive multiple of 16, "
                             f"got {size!r}")
    for spec in cfg.data.train:
        if spec.pretrain is None:
            continue
        if spec.pretrain not in PRETRAIN_FILES:
            raise InputError(f"{spec.path}: pretrain must be one of {', '.join(PRETRAIN_FILES)}, "
                             f"got {spec.pretrain!r}")
        if spec.tasks is not None or spec.constrain or spec.decoder_noise:
            raise InputError(f"{spec.path}: a pretraining file makes its own tasks; drop "
                             "tasks, constrain and decoder_noise")
        if not spec.path.endswith(".tsv"):
            raise InputError(f"{spec.path}: pretraining files are the official TSVs (.tsv)")
    if any(spec.pretrain == "pairs" for spec in cfg.data.train) and not cfg.data.negatives:
        raise InputError("pretraining pairs need ITM negatives: set data.negatives to a folder "
                         "with all_captions.txt, object.txt and type2ans.json")
    n = cfg.data.sample_patches
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise InputError(f"data.sample_patches must be a positive integer, got {n!r}")


def _check_scst(cfg: TrainConfig) -> None:
    s = cfg.scst
    if not isinstance(s.df, str) or not s.df:
        raise InputError("scst.df must name a document-frequency file (ofa data cider-df)")
    if s.search not in ("beam", "sampling"):
        raise InputError(f"scst.search must be beam or sampling, got {s.search!r}")
    for name in ("samples", "max_len_b"):
        value = getattr(s, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"scst.{name} must be a positive integer, got {value!r}")
    if s.samples < 2:
        raise InputError("scst.samples must be at least 2: each caption's baseline is the "
                         "mean reward of the image's other captions")
    for name in ("no_repeat_ngram_size", "top_k"):
        value = getattr(s, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError(f"scst.{name} must be a non-negative integer, got {value!r}")
    if isinstance(s.temperature, bool) or not isinstance(s.temperature, int | float) or \
            s.temperature <= 0:
        raise InputError(f"scst.temperature must be a positive number, got {s.temperature!r}")
    if any(spec.pretrain for spec in cfg.data.train):
        raise InputError("scst trains captions only: drop the pretraining files")
    tasks = {t for spec in cfg.data.train for t in (spec.tasks or ["caption"])}
    if tasks != {"caption"}:
        raise InputError("scst trains captions only: give every data.train dataset "
                         "tasks: [caption]")


def _set_dotted(data: dict, key: str, value: Any) -> None:
    """``data["a"]["b"][0]["c"] = value`` for the key ``"a.b.0.c"``."""
    node: Any = data
    *parents, last = key.split(".")
    try:
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    except (ValueError, IndexError, TypeError, AttributeError):
        raise InputError(f"cannot set {key!r}: no such place in the config") from None


def load_config(path: str | os.PathLike[str], overrides: dict[str, Any] | None = None
                ) -> TrainConfig:
    """Read a YAML config (relative paths in it are relative to the working directory, as on
    the command line); ``overrides`` maps dotted keys (``"data.num_workers"``) to values."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise InputError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise InputError(f"{p}: invalid YAML ({e})") from None
    for key, value in (overrides or {}).items():
        _set_dotted(data, key, value)
    return build_config(data, str(p))


def build_config(data: dict[str, Any], where: str = "config") -> TrainConfig:
    """A checked TrainConfig from a plain mapping (what the YAML file holds)."""
    if isinstance(data, dict) and data.get("global_batch") is not None and \
            data.get("update_freq") not in (None, 1):
        raise InputError(f"{where}: give update_freq or global_batch, not both")
    if isinstance(data, dict) and data.get("max_epochs") is not None:
        if data.get("max_updates") is not None:
            raise InputError(f"{where}: give max_updates or max_epochs, not both")
        data = {k: v for k, v in data.items() if k != "max_updates"}
    cfg = _build(TrainConfig, data, where)
    _check(cfg, updates_known=cfg.max_epochs is None)
    return cfg


def resolve_for_run(cfg: TrainConfig, dataset_sizes: list[int], world_size: int = 1
                    ) -> TrainConfig:
    """``cfg`` as this run trains it: ``update_freq`` from ``global_batch`` and the number of
    processes, and ``max_updates`` from ``max_epochs`` as fairseq's --max-epoch counts them:
    an epoch is one pass over the training records (``dataset_sizes``, one per data.train
    entry) at the share of each global batch they fill. Pretraining's text, image and
    detection files are streams read beside the pairs, as the official ones are: they do not
    count."""
    from .data import shares
    from .pretrain import EXTRA_FILES

    resolved = cfg
    if cfg.global_batch is not None:
        per_pass = cfg.batch_size * world_size
        if cfg.global_batch % per_pass:
            raise InputError(f"global_batch {cfg.global_batch} is not a multiple of batch_size "
                             f"{cfg.batch_size} x {world_size} process(es); change batch_size "
                             "or the number of processes")
        resolved = dataclasses.replace(resolved, update_freq=cfg.global_batch // per_pass)
    if cfg.max_epochs is not None:
        global_batch = resolved.batch_size * resolved.update_freq * world_size
        slots = shares([d.ratio for d in cfg.data.train], global_batch)
        main = [i for i, d in enumerate(cfg.data.train) if d.pretrain not in EXTRA_FILES]
        per_epoch = math.ceil(sum(dataset_sizes[i] for i in main) /
                              sum(slots[i] for i in main))
        resolved = dataclasses.replace(resolved,
                                       max_updates=max(1, math.ceil(cfg.max_epochs * per_epoch)))
    _check(resolved)
    return resolved
