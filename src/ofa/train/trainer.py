"""The training loop: DDP (or FSDP) over ``torch.distributed``, label-smoothed cross-entropy
(or SCST's CIDEr-D reward with an ``scst:`` section, ``scst.py``), AdamW with warmup +
polynomial decay, accumulation, clipping, autocast, EMA, validation with each task's metric,
atomic checkpoints and exact resume.

Files in ``output_dir``: ``checkpoint_last.pt`` (everything needed to resume, as tensors and
plain data: see ``state.py``), ``best/`` and ``final/`` (model folders ``ofa.load`` reads),
``train_log.jsonl`` (one line per update) and ``valid_log.jsonl`` (one line per validation),
and with ``tensorboard: true`` the same in ``tensorboard/`` (``watch.py``).
What a killed run leaves behind is put right when the next one starts (``run_folder.py``).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import math
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..checkpoints import model_from_checkpoint, read_checkpoint, save_native
from ..data.answer_lists import read_answer_list
from ..data.glue import read_glue_tsv
from ..data.pretrain_tsv import read_pretrain_tsv
from ..data.records import read_jsonl
from ..data.tsv import TSVRecords, read_tsv
from ..errors import InputError
from ..files import replacing
from ..generate import Trie, generate
from ..model import OFAConfig, OFAModel
from ..tasks import TASKS
from ..tokenizer import BIN_OFFSET, CODE_OFFSET, NUM_BINS, NUM_CODES, PAD, OFATokenizer
from .config import TrainConfig, resolve_for_run
from .data import StepBatches
from .distributed import DistInfo, all_reduce_sum, barrier, init_distributed, shutdown
from .ema import EMA
from .featurize import CONSTRAINABLE_TASKS, candidate_tries
from .loss import NUM_SPECIAL_IDS, label_smoothed_cross_entropy
from .optim import (
    Restart,
    build_optimizer,
    clip_grad_norm,
    freeze,
    polynomial_decay_schedule,
    set_batchnorm_eval,
)
from .pretrain import Negatives, PretrainSamples
from .run_folder import TRAIN_LOG, VALID_LOG, new_folder, prepare, replace_folder
from .scst import ScstReward, gather_references, scst_loss, scst_sequences
from .state import VERSION, numpy_rng_state, read_training_state, set_numpy_rng_state
from .watch import TensorBoardLog

CHECKPOINT = "checkpoint_last.pt"
# what keep-best averages by default: each task's published figure (the task table's)
PRIMARY_METRICS = tuple(f"{t.name}/{t.primary_metric}" for t in TASKS.values()
                        if t.primary_metric)


def code_columns(image_codes: int = NUM_CODES) -> tuple[tuple[int, int], torch.Tensor]:
    """What an image-code target may be (the ids of the VQGAN's ``image_codes`` codes) and
    the ids its row is scored over: the specials, then those codes."""
    start, end = CODE_OFFSET, CODE_OFFSET + image_codes
    return (start, end), torch.cat([torch.arange(NUM_SPECIAL_IDS), torch.arange(start, end)])

_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def step_seed(seed: int, step: int, rank: int) -> int:
    """Dropout/drop-path randomness of one update, so a resumed run draws the same."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])


def kept_tokens(ntokens: int, drop_worst_ratio: float) -> int:
    """Tokens left after drop-worst (what the loss is normalised by)."""
    return ntokens if drop_worst_ratio <= 0 else int(ntokens * (1 - drop_worst_ratio))


def summary_metric(metrics: dict[str, float], key: str | None) -> float | None:
    """The number keep-best compares: ``key``, or the mean of the tasks' primary metrics."""
    if key is not None:
        if key not in metrics:
            raise InputError(f"keep_best metric {key!r} not among validation metrics "
                             f"{sorted(metrics)}")
        return metrics[key]
    primary = [metrics[k] for k in PRIMARY_METRICS if k in metrics]
    return sum(primary) / len(primary) if primary else None


def init_fan_in(model: OFAModel) -> None:
    """Re-draw every Linear weight from N(0, 1/fan_in). fairseq's fixed 0.02 suits d=768; at
    d=128 it shrinks each projection ~4x, and a from-scratch model then needs far longer to
    route image features through attention (measured: colour of a single shape is learned in
    ~120 updates with this init, not within 200 with 0.02)."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                module.weight.normal_(0.0, module.weight.shape[1] ** -0.5)


def init_smooth_bins(model: OFAModel) -> None:
    """Start the ``<bin_i>`` embeddings as a sinusoidal code of i (at the init's 0.02 scale),
    so neighbouring coordinates begin close together. From scratch, 1000 unrelated random
    rows each see few examples; a smooth start lets grounding learn like a regression."""
    d = model.config.d_model
    bins = torch.arange(NUM_BINS, dtype=torch.float64)[:, None]
    # periods from 2x the bin range down to 50 bins: only coarse-to-medium detail
    periods = torch.logspace(math.log10(2 * NUM_BINS), math.log10(50), (d + 1) // 2,
                             dtype=torch.float64)
    freqs = 2 * math.pi / periods
    code = torch.cat([torch.sin(bins * freqs), torch.cos(bins * freqs)], dim=1)[:, :d]
    with torch.no_grad():
        model.embed_tokens.weight[BIN_OFFSET:BIN_OFFSET + NUM_BINS] = (code * 0.02 / code.std()
                                                                      ).float()


def _atomic_save(obj: Any, path: Path) -> None:
    with replacing(path) as tmp:
        torch.save(obj, tmp)


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory instead of returning it to the kernel. Every update
    allocates and frees hundreds of MB of large tensors (vocabulary-sized logits, gradients);
    by default each is a fresh mmap whose pages the kernel zeroes again (the page faults it
    costs per update are in BENCHMARKS.md)."""
    if sys.platform != "linux":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        big = 1 << 30  # mallopt takes a C int: larger values would wrap around
        # M_TRIM_THRESHOLD -1, M_TOP_PAD -2, M_MMAP_THRESHOLD -3 (malloc.h)
        return all(libc.mallopt(opt, val) == 1 for opt, val in
                   ((-3, big), (-1, big), (-2, 1 << 28)))
    except (OSError, AttributeError):
        return False


def _memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class Trainer:
    """Build everything a config describes; :meth:`train` runs to ``max_updates``."""

    def __init__(self, cfg: TrainConfig, *, resume: bool = False, progress: bool = True,
                 info: DistInfo | None = None) -> None:
        self.cfg = cfg
        self.code_range, self.code_columns = code_columns(cfg.data.image_codes)
        self.info = info or init_distributed(cfg.device)
        self.out = Path(cfg.output_dir)
        self.progress = progress and self.info.is_main
        self.board: TensorBoardLog | None = None  # train() opens it when cfg.tensorboard
        self.valid_predictions: list[dict] = []  # of the last validation, on the main process
        if self.info.device.type == "cpu":
            keep_freed_memory()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        ckpt_path = self.out / CHECKPOINT
        if ckpt_path.exists() and not resume:
            raise InputError(f"{self.out} already holds a training run; pass --resume to "
                             "continue it or choose another output_dir")
        if cfg.fsdp and cfg.ema_decay is not None:
            raise InputError("EMA with FSDP is not supported; drop ema_decay or fsdp")
        files: dict[str, list[dict]] = {}  # each file parsed once, however many entries use it

        def records(spec) -> list[dict]:
            if spec.pretrain is not None:  # lazy too
                return read_pretrain_tsv(spec.path, spec.pretrain, spec.selected_cols)
            if spec.path.endswith(".tsv"):  # lazy: rows are parsed when a batch needs them
                rows = (read_glue_tsv(spec.path, selected_cols=spec.selected_cols)
                        if spec.tasks[0] == "glue"  # text only: a layout per GLUE dataset
                        else read_tsv(spec.path, spec.tasks[0], spec.selected_cols))
                return rows if spec.limit is None else rows[:spec.limit]
            if spec.path not in files:
                files[spec.path] = read_jsonl(spec.path)
            kept = [r for r in files[spec.path] if spec.tasks is None or r["task"] in spec.tasks]
            return kept[:spec.limit]

        self.train_records = [records(d) for d in cfg.data.train]
        if cfg.scst is not None:
            if cfg.fsdp:
                raise InputError("scst with fsdp is not supported: its captions come from "
                                 "the whole model on each process (use DDP)")
            # each caption is rewarded against all its image's references
            self.train_records = [recs if isinstance(recs, TSVRecords)
                                  else gather_references(recs) for recs in self.train_records]
        sizes = [len(recs) for recs in self.train_records]
        self.cfg = cfg = resolve_for_run(cfg, sizes, self.info.world_size)
        if cfg.max_epochs is not None and self.info.is_main:
            print(f"max_epochs {cfg.max_epochs:g} over {sum(sizes):,} training records in "
                  f"batches of {cfg.batch_size * cfg.update_freq * self.info.world_size}: "
                  f"{cfg.max_updates:,} updates", flush=True)
        self.tokenizer, self.model, self.image_size = self._build_model()
        self.model.to(self.info.device)
        m = cfg.model
        freeze(self.model, embeddings=m.freeze_embeddings, resnet=m.freeze_resnet,
               batchnorm=m.freeze_batchnorm)
        self._set_train_mode()
        self.ema = (EMA(self.model, cfg.ema_decay, cfg.ema_start) if cfg.ema_decay is not None
                    else None)
        self.wrapped = self._wrap(self.model)
        self.optimizer = build_optimizer(self.model, cfg.lr, cfg.weight_decay, cfg.betas,
                                         cfg.adam_eps)
        self.scst = ScstReward(cfg.scst, self.tokenizer) if cfg.scst is not None else None
        # a pretraining run's model answers as a pretrained checkpoint does (VQA: the question
        # in the encoder, no answer trie), in validation and once exported
        self.model_task = "pretrained" if any(d.pretrain for d in cfg.data.train) else None
        self.scheduler = polynomial_decay_schedule(
            self.optimizer, cfg.warmup, cfg.max_updates, cfg.end_lr, cfg.power,
            restarts=[Restart(r.update, r.lr / cfg.lr, r.warmup_updates, r.decay_updates)
                      for r in cfg.lr_restarts], decay_updates=cfg.decay_updates)
        self.scaler = (torch.amp.GradScaler(self.info.device.type)
                       if cfg.dtype == "fp16" else None)
        self.valid_records = [r for d in cfg.data.valid for r in records(d)]
        if any(r.get("task") == "imagine" for r in self.valid_records):
            # drawing needs the VQGAN, which the trainer does not hold: fail now, not at the
            # first validation
            raise InputError("data.valid holds imagine records: validation does not draw; "
                             "score a saved model with `ofa eval` or "
                             "benchmarks/shapes_imagine.py (list the other tasks in tasks:)")
        self.vqa_answers = self._read_answers(cfg.data.vqa_answers)
        tries = [self._tries(spec, recs) for spec, recs in zip(cfg.data.train,
                                                                self.train_records, strict=True)]
        self.batches = StepBatches(
            self.train_records, [d.ratio for d in cfg.data.train], self.tokenizer,
            batch_size=cfg.batch_size, update_freq=cfg.update_freq, rank=self.info.rank,
            world_size=self.info.world_size, seed=cfg.seed, image_size=self.image_size,
            max_source_length=cfg.data.max_source_length,
            max_target_length=cfg.data.max_target_length, num_updates=cfg.max_updates,
            cache_images=cfg.data.cache_images,
            windows=[(d.from_update, d.until_update) for d in cfg.data.train], tries=tries,
            decoder_noise=[d.decoder_noise for d in cfg.data.train],
            image_sizes=[d.image_size for d in cfg.data.train], pretrain=self._pretrain())
        self.step = 0
        self.best: float | None = None
        resumed = resume and ckpt_path.exists()
        if resumed:
            self._load(ckpt_path)
        if self.info.is_main:  # logs end where this run begins; no leftovers of killed writes
            prepare(self.out, self.step if resumed else None)

    # ------------------------------------------------------------------ setup
    def _build_model(self) -> tuple[OFATokenizer, OFAModel, int | None]:
        m = self.cfg.model
        reg = {"dropout": m.dropout, "attention_dropout": m.attention_dropout,
               "encoder_drop_path_rate": m.drop_path, "decoder_drop_path_rate": m.drop_path}
        if m.init is not None:
            path = Path(m.init)
            if not path.exists():
                from ..download import fetch_pretrained
                path = fetch_pretrained(m.init, progress=self.info.is_main)
            ckpt = read_checkpoint(path, ema=m.ema_weights)
            try:  # model.config over a checkpoint: settings such as code_image_size
                ckpt.config = dataclasses.replace(ckpt.config, **{**m.config, **reg})
            except TypeError as e:
                raise InputError(f"model.config: {e}") from None
            model = model_from_checkpoint(ckpt)
            tok_dir = self.cfg.tokenizer or ckpt.tokenizer_dir
            image_size = m.image_size or ckpt.meta.get("image_size")
        else:
            try:
                config = (OFAConfig.preset(m.preset, **{**m.config, **reg}) if m.preset
                          else OFAConfig(**{**m.config, **reg}))
            except TypeError as e:
                raise InputError(f"model.config: {e}") from None
            torch.manual_seed(self.cfg.seed)  # the same initial weights on every process
            model = OFAModel(config)
            if m.linear_init == "fan_in":
                init_fan_in(model)
            if m.smooth_bins:
                init_smooth_bins(model)
            tok_dir, image_size = self.cfg.tokenizer, m.image_size
        try:
            tokenizer = OFATokenizer.from_dir(tok_dir)
        except InputError as e:
            raise InputError(f"tokenizer: {e}") from None
        return tokenizer, model, image_size

    def _wrap(self, model: OFAModel) -> nn.Module:
        if not self.info.distributed:
            return model
        if self.cfg.fsdp:
            from torch.distributed.fsdp import fully_shard

            for layer in [*model.encoder.layers, *model.decoder.layers]:
                fully_shard(layer)
            fully_shard(model)
            return model
        ids = [self.info.device.index] if self.info.device.type == "cuda" else None
        # text-only batches leave the image path unused, and the image-code parameters are
        # unused outside image generation (official: --find-unused-parameters)
        return nn.parallel.DistributedDataParallel(model, device_ids=ids,
                                                   find_unused_parameters=True)

    def _tries(self, spec, records) -> dict[str, Trie] | None:
        """The answer tries of a ``constrain: true`` training dataset."""
        if not spec.constrain:
            return None
        if isinstance(records, TSVRecords):
            tasks = [records.task]
            # the labels are all a classification trie reads: leave the images undecoded
            records = TSVRecords(records.file, records.task, decode_images=False)
        else:
            tasks = sorted({r["task"] for r in records})
        tasks = [t for t in tasks if t in CONSTRAINABLE_TASKS]
        if not tasks:
            raise InputError(f"{spec.path}: constrain applies to "
                             f"{', '.join(CONSTRAINABLE_TASKS)} records; this dataset has none")
        try:
            return candidate_tries(tasks, self.tokenizer, vqa_answers=self.vqa_answers,
                                   records=records)
        except InputError as e:
            raise InputError(f"{spec.path}: {e}") from None

    def _pretrain(self) -> PretrainSamples | None:
        """The builder of pretraining samples, when a training dataset is a pretraining file."""
        if not any(d.pretrain for d in self.cfg.data.train):
            return None
        data = self.cfg.data
        negatives = Negatives.load(data.negatives) if data.negatives else None
        return PretrainSamples(self.tokenizer, negatives,
                               max_source_length=data.max_source_length,
                               max_target_length=data.max_target_length)

    @staticmethod
    def _read_answers(path: str | None) -> list[str] | None:
        return None if path is None else read_answer_list(path, "vqa_answers")

    def _set_train_mode(self) -> None:
        self.model.train()
        m = self.cfg.model
        if m.freeze_resnet or m.freeze_batchnorm:  # frozen statistics, as FrozenBatchNorm2d
            set_batchnorm_eval(self.model.encoder.embed_images)

    # ------------------------------------------------------------ state I/O
    def _full_model_state(self) -> dict[str, torch.Tensor]:
        if self.cfg.fsdp and self.info.distributed:
            from torch.distributed.checkpoint.state_dict import (
                StateDictOptions,
                get_model_state_dict,
            )

            return get_model_state_dict(self.model, options=StateDictOptions(
                full_state_dict=True, cpu_offload=True))
        return {k: v.detach().cpu() for k, v in self.model.state_dict().items()}

    def _optimizer_state(self) -> dict:
        if self.cfg.fsdp and self.info.distributed:
            from torch.distributed.checkpoint.state_dict import (
                StateDictOptions,
                get_optimizer_state_dict,
            )

            return get_optimizer_state_dict(self.model, self.optimizer, options=StateDictOptions(
                full_state_dict=True, cpu_offload=True))
        return self.optimizer.state_dict()

    def save(self) -> None:
        """``checkpoint_last.pt``, written to a temporary file and renamed (all processes
        take part under FSDP; only the main process writes)."""
        model_state, optim_state = self._full_model_state(), self._optimizer_state()
        if self.info.is_main:
            # only what torch.load(weights_only=True) reads: tensors and plain data (a numpy
            # value would pickle as a numpy object). The config is a record, never read back:
            # through JSON it holds plain values whatever the YAML gave
            state = {"version": VERSION, "step": self.step,
                     "best": None if self.best is None else float(self.best),
                     "config": json.loads(json.dumps(self.cfg.to_dict(), default=str)),
                     "model_config": self.model.config.to_dict(),
                     "image_size": self.image_size, "model": model_state,
                     "optimizer": optim_state, "scheduler": self.scheduler.state_dict(),
                     "ema": self.ema.state_dict() if self.ema else None,
                     "scaler": self.scaler.state_dict() if self.scaler else None,
                     "rng": {"torch": torch.get_rng_state(), "numpy": numpy_rng_state()}}
            self.out.mkdir(parents=True, exist_ok=True)
            _atomic_save(state, self.out / CHECKPOINT)
        barrier(self.info)

    def _load(self, path: Path) -> None:
        state = read_training_state(path)
        if state.get("model_config") != self.model.config.to_dict():
            raise InputError(f"{path} was written for another model configuration; "
                             "resume with the config it was trained with")
        if self.cfg.fsdp and self.info.distributed:
            from torch.distributed.checkpoint.state_dict import (
                StateDictOptions,
                set_state_dict,
            )

            set_state_dict(self.model, self.optimizer, model_state_dict=state["model"],
                           optim_state_dict=state["optimizer"],
                           options=StateDictOptions(full_state_dict=True))
        else:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        # the next update's lr comes from this config's schedule, not the checkpoint's: the
        # same for an exact resume, and a branch that adds a restart starts it on time
        lrs = self.scheduler.get_lr()
        for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr
        self.scheduler._last_lr = lrs
        if self.ema is not None:
            if state.get("ema") is not None:
                self.ema.load_state_dict(state["ema"])
            else:  # EMA added to a run saved without it: average from the resumed weights
                self.ema = EMA(self.model, self.cfg.ema_decay, self.cfg.ema_start)
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        set_numpy_rng_state(state["rng"]["numpy"])
        self.step, self.best = state["step"], state["best"]

    def export(self, folder: str, metrics: dict[str, float] | None = None) -> Path | None:
        """Write the (EMA) weights as a model folder ``ofa.load`` reads."""
        model = self._eval_model()
        if model is None:
            return None
        tmp = new_folder(self.out, folder)
        shutil.rmtree(tmp, ignore_errors=True)
        source = {"image_size": self.image_size, "trained_updates": self.step,
                  "metrics": metrics or {}}
        if self.model_task is not None:
            source["task"] = self.model_task
        with self._ema_weights(model):
            save_native(model, tmp, self.tokenizer, source=source)
        replace_folder(tmp, self.out / folder)
        return self.out / folder

    # ------------------------------------------------------------ validation
    def _eval_model(self) -> OFAModel | None:
        """A plain model for inference on the main process (None elsewhere)."""
        if self.cfg.fsdp and self.info.distributed:
            state = self._full_model_state()  # collective
            if not self.info.is_main:
                return None
            model = OFAModel(self.model.config)
            model.load_state_dict(state)
            return model.to(self.info.device)
        return self.model if self.info.is_main else None

    def _ema_weights(self, model: OFAModel):
        return self.ema.swapped(model) if self.ema is not None else contextlib.nullcontext()

    def validate(self) -> dict[str, float] | None:
        """Task metrics on the validation records, computed on the main process and shared."""
        if not self.valid_records:
            return None
        from ..api import OFA
        from ..evaluate import evaluate_records

        model = self._eval_model()
        metrics = None
        self.valid_predictions = []
        if model is not None:
            was_training = model.training
            try:
                with self._ema_weights(model), torch.no_grad():
                    ofa = OFA(model, self.tokenizer, image_size=self.image_size,
                              task=self.model_task)
                    metrics, self.valid_predictions = evaluate_records(
                        ofa, self.valid_records, vqa_answers=self.vqa_answers,
                        vqa_mode=self.cfg.data.vqa_valid_mode,
                        batch_size=self.cfg.valid_batch_size)
            finally:
                if was_training:
                    self._set_train_mode()
        if self.info.distributed:  # every process takes the same keep-best decision
            import torch.distributed as dist

            shared = [metrics]
            dist.broadcast_object_list(shared, src=0)
            metrics = shared[0]
        return metrics

    # ------------------------------------------------------------------ loop
    def _forward_loss(self, batch, drop_worst: float):
        b = batch.to(self.info.device)
        output_mask = b.target.ne(PAD)
        target = b.target[output_mask]
        weights = b.weights[:, None].expand_as(b.target)[output_mask]
        answer_rows, answer_mask, code_rows = b.split_constraints(self.model.config.vocab_size)
        if code_rows is not None and bool(target[code_rows].ge(self.code_range[1]).any()):
            raise InputError(f"an image-code target lies beyond data.image_codes "
                             f"({self.cfg.data.image_codes}): set it to the codebook size of "
                             "the VQGAN that encoded the images")
        with self._autocast():
            logits = self.wrapped(b.source, b.decoder_input, b.images, b.image_mask,
                                  code_mask=b.code_mask, output_mask=output_mask,
                                  code_rows=code_rows,
                                  code_columns=None if code_rows is None else self.code_columns,
                                  sample_patches=(self.cfg.data.sample_patches if b.group == 0
                                                  else None))
        code_logits = None
        if code_rows is not None:
            logits, code_logits = logits
        return label_smoothed_cross_entropy(logits, target, self.cfg.label_smoothing,
                                            weights=weights, drop_worst_ratio=drop_worst,
                                            allowed=answer_mask, allowed_rows=answer_rows,
                                            code_rows=code_rows, code_range=self.code_range,
                                            code_logits=code_logits)

    def train_step(self, micro_batches) -> dict[str, float]:
        """One update over this process's micro-batches; returns global statistics."""
        cfg = self.cfg
        torch.manual_seed(step_seed(cfg.seed, self.step, self.info.rank))
        if any(r.reset_optimizer and r.update == self.step for r in cfg.lr_restarts):
            self.optimizer.state.clear()  # AdamW starts its moments (and bias correction) anew
        self.optimizer.zero_grad(set_to_none=True)
        stats = (self._scst_backward(micro_batches) if self.scst is not None
                 else self._ce_backward(micro_batches))
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        gnorm = clip_grad_norm([p for p in self.model.parameters() if p.requires_grad],
                               cfg.clip_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        if self.ema is not None:
            self.ema.update(self.model, self.step)
        if self.info.distributed:
            import torch.distributed as dist

            dist.all_reduce(stats)
        common = {"lr": self.optimizer.param_groups[0]["lr"], "gnorm": float(gnorm)}
        if self.scst is not None:
            loss_sum, score_sum, ntok, nsent = stats.tolist()
            return {"step": self.step, "loss": loss_sum / max(ntok, 1),
                    "reward": score_sum / max(nsent, 1), "ntokens": int(ntok),
                    "nsentences": int(nsent), **common}
        loss_sum, nll_sum, ntok, correct = stats.tolist()
        return {"step": self.step, "loss": loss_sum / max(ntok, 1),
                "nll": nll_sum / max(ntok, 1), "ppl": math.exp(min(nll_sum / max(ntok, 1), 50)),
                "acc": correct / max(ntok, 1), "ntokens": int(ntok), **common}

    def _sync(self, last: bool):
        """DDP syncs gradients on the last micro-batch's backward only."""
        if isinstance(self.wrapped, nn.parallel.DistributedDataParallel) and not last:
            return self.wrapped.no_sync()
        return contextlib.nullcontext()

    def _autocast(self):
        dtype = _AUTOCAST.get(self.cfg.dtype)
        return (torch.autocast(self.info.device.type, dtype=dtype) if dtype is not None
                else contextlib.nullcontext())

    def _ce_backward(self, micro_batches) -> torch.Tensor:
        """Label-smoothed cross-entropy gradients; [loss, nll, tokens, correct] sums."""
        cfg = self.cfg
        # official: drop-worst once more than drop_worst_after updates are done
        drop = cfg.drop_worst_ratio if self.step > cfg.drop_worst_after else 0.0
        # each loss group is normalised by its own tokens over the global batch (pretraining:
        # the official loss_pairs / tokens_pairs + loss_extras / tokens_extras); DDP averages
        # gradients over processes, so scale by the world size too
        groups = (0, 1) if self.batches.pretrain is not None else (0,)
        scale = {}
        for g in groups:
            local = sum(kept_tokens(mb.ntokens, drop) for mb in micro_batches if mb.group == g)
            scale[g] = self.info.world_size / max(all_reduce_sum(float(local), self.info), 1.0)
        stats = torch.zeros(4, dtype=torch.float64)
        for i, mb in enumerate(micro_batches):
            with self._sync(i == len(micro_batches) - 1):
                out = self._forward_loss(mb, drop)
                loss = out.loss * scale[mb.group]
                (self.scaler.scale(loss) if self.scaler else loss).backward()
            stats += torch.tensor([out.loss.item(), out.nll.item(), out.ntokens, out.correct],
                                  dtype=torch.float64)
        return stats

    def _scst_backward(self, micro_batches) -> torch.Tensor:
        """SCST gradients (``scst.py``); [loss, CIDEr-D of the captions, tokens, captions]
        sums. The captions of every micro-batch come first, from the model in eval mode."""
        device = self.info.device
        sampler = torch.Generator(device=device)
        sampler.manual_seed(step_seed(self.cfg.seed, self.step, self.info.rank))
        config = self.scst.generation_config()
        plans = []
        self.model.eval()
        try:
            with torch.no_grad(), self._autocast():
                for mb in micro_batches:
                    b = mb.to(device)
                    if b.references is None or any(r is None for r in b.references):
                        raise InputError("scst: every training record must be a caption")
                    per_image = generate(self.model, b.source, b.images, b.image_mask,
                                         config, generator=sampler)
                    scores, rewards = self.scst.rewards(
                        [self.scst.captions(hyps) for hyps in per_image], b.references)
                    plans.append((b, per_image, np.concatenate(scores),
                                  np.concatenate(rewards)))
        finally:
            self._set_train_mode()
        sequences = [scst_sequences([h for hyps in per_image for h in hyps])
                     for _, per_image, _, _ in plans]
        local_norm = sum(int(target.ne(PAD).sum()) for _, target in sequences)
        scale = self.info.world_size / max(all_reduce_sum(float(local_norm), self.info), 1.0)
        stats = torch.zeros(4, dtype=torch.float64)
        for i, ((b, per_image, scores, rewards), (decoder_input, target)) in enumerate(
                zip(plans, sequences, strict=True)):
            counts = torch.tensor([len(hyps) for hyps in per_image], device=device)
            images, image_mask = b.images, b.image_mask
            if images is not None:
                images = images.repeat_interleave(counts, 0)
            if image_mask is not None:
                image_mask = image_mask.repeat_interleave(counts, 0)
            decoder_input, target = decoder_input.to(device), target.to(device)
            with self._sync(i == len(plans) - 1):
                with self._autocast():
                    logits = self.wrapped(b.source.repeat_interleave(counts, 0), decoder_input,
                                          images, image_mask, output_mask=target.ne(PAD))
                loss = scst_loss(logits, target, torch.as_tensor(rewards, device=device))
                (self.scaler.scale(loss * scale) if self.scaler else loss * scale).backward()
            stats += torch.tensor([loss.item(), float(scores.sum()), int(target.ne(PAD).sum()),
                                   len(scores)], dtype=torch.float64)
        return stats

    def _loader(self):
        steps = range(self.step, self.cfg.max_updates)
        if self.cfg.data.num_workers <= 0:
            return (self.batches[s] for s in steps)
        return iter(torch.utils.data.DataLoader(
            self.batches, batch_size=None, sampler=list(steps),
            num_workers=self.cfg.data.num_workers, persistent_workers=False))

    def train(self) -> dict[str, Any]:
        """Run to ``max_updates``: log, validate, keep the best, checkpoint, export."""
        cfg, info = self.cfg, self.info
        if info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n",
                                                  encoding="utf-8")
        self.board = (TensorBoardLog(self.out / "tensorboard", self.step,
                                     cfg.tensorboard_samples)
                      if cfg.tensorboard and info.is_main else None)
        bar = tqdm(total=cfg.max_updates, initial=self.step, disable=not self.progress,
                   unit="upd", dynamic_ncols=True)
        window = {"loss": 0.0, "ntokens": 0, "t0": time.perf_counter()}
        last_metrics: dict[str, float] | None = None
        try:
            for micro in self._loader():
                rec = self.train_step(micro)
                window["loss"] += rec["loss"] * rec["ntokens"]
                window["ntokens"] += rec["ntokens"]
                if info.is_main:
                    with (self.out / TRAIN_LOG).open("a", encoding="utf-8") as f:
                        f.write(json.dumps(rec) + "\n")
                    if self.board is not None:
                        self.board.train(rec)
                    bar.update(1)
                    bar.set_postfix(loss=f"{rec['loss']:.3f}", lr=f"{rec['lr']:.2e}")
                if self.step % cfg.log_interval == 0 and info.is_main:
                    elapsed = time.perf_counter() - window["t0"]
                    mean_loss = window["loss"] / max(window["ntokens"], 1)
                    bar.write(f"step {self.step} | loss {mean_loss:.4f}"
                              f" | lr {rec['lr']:.3e} | gnorm {rec['gnorm']:.2f}"
                              f" | {window['ntokens'] / elapsed:.0f} tok/s"
                              f" | mem {_memory_mb(info.device):.0f} MiB")
                    window = {"loss": 0.0, "ntokens": 0, "t0": time.perf_counter()}
                at_end = self.step == cfg.max_updates
                if self.step % cfg.valid_interval == 0 or at_end:
                    metrics = self.validate()
                    if metrics is not None:
                        last_metrics = metrics
                        self._after_validation(metrics, bar)
                if self.step % cfg.save_interval == 0 or at_end:
                    self.save()
        finally:
            bar.close()
            if self.board is not None:
                self.board.close()
        self.export("final", last_metrics)
        barrier(info)
        return {"step": self.step, "best": self.best, "metrics": last_metrics}

    def _after_validation(self, metrics: dict[str, float], bar) -> None:
        score = summary_metric(metrics, self.cfg.keep_best)
        improved = score is not None and (self.best is None or score > self.best)
        if improved:
            self.best = score
        if self.info.is_main:
            line = {"step": self.step, **metrics, "score": score, "best": self.best}
            with (self.out / VALID_LOG).open("a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")
            if self.board is not None:
                self.board.valid(self.step, metrics, self.valid_records,
                                 self.valid_predictions)
            shown = " | ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            bar.write(f"valid step {self.step} | {shown}" + (" | new best" if improved else ""))
        if improved:
            self.export("best", metrics)


def run(cfg: TrainConfig, *, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train with ``cfg`` in this process (one of many under torchrun)."""
    info = init_distributed(cfg.device)
    try:
        return Trainer(cfg, resume=resume, progress=progress, info=info).train()
    finally:
        shutdown(info)
