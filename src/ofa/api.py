"""The Python API: ``ofa.load(...)`` returns an :class:`OFA` with one method per task.

Every method takes one input or a list (batched internally); images may be paths, PIL images,
numpy arrays or tensors. One input gives one result dict, a list gives a list of dicts.
Each result holds ``input``, the task's fields, ``tokens`` (decoded ids without the decoder
start token, with the final EOS, including a forced prefix) and ``score``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from .errors import InputError, OFAError
from .generate import Trie, encode_answers, generate, score_candidates
from .model import OFAModel
from .preprocess import ImageTransform, check_max_pixels
from .tasks import TASKS, Task, get_task
from .tasks.base import Example, TaskField, require_language
from .tokenizer import BOS, EOS, OFATokenizer, pad_batch, printable, require_utf8

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16,
           "fp16": torch.float16, "half": torch.float16, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16}


def parse_dtype(dtype: str | torch.dtype | None,
                device: torch.device | None = None) -> torch.dtype | None:
    """The torch dtype a name gives; ``"auto"``: the fastest one ``device`` (default: the
    CPU) runs natively (:func:`ofa.hardware.auto_dtype`)."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        from .hardware import auto_dtype

        return auto_dtype(device or torch.device("cpu"))
    if dtype not in _DTYPES:
        raise InputError(f"unknown dtype {dtype!r}; choose one of auto, {', '.join(_DTYPES)}")
    return _DTYPES[dtype]


def parse_device(device: str | torch.device | None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device {device!r} (use cpu, cuda, cuda:1, mps, auto)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' requested but no CUDA GPU is available; use --device cpu")
    return dev


def _is_batch(x: Any) -> bool:
    return isinstance(x, list | tuple)


def _text_length(fields: dict) -> int:
    return sum(len(v) for v in fields.values() if isinstance(v, str))


def _label(image: Any, fields: dict) -> str:
    """What a result's ``input`` shows: the image path, or the text of a text-only input."""
    if image is None:
        return printable(str(next(iter(fields.values()), "")))
    if isinstance(image, str | os.PathLike):
        return printable(str(image))  # a file name need not be valid UTF-8
    return f"<{type(image).__name__}>"


def _check_text_fields(fields: dict) -> None:
    """Refuse text that is not valid UTF-8 (undecodable bytes from the command line or a file
    arrive as lone surrogates) naming the field, before a task rewrites it into a prompt."""
    for key, value in fields.items():
        for text in value if isinstance(value, list | tuple) else [value]:
            if isinstance(text, str):
                require_utf8(text, key)


class OFA:
    """A loaded OFA model with its tokenizer, ready for every task."""

    def __init__(self, model: OFAModel, tokenizer: OFATokenizer, *, name: str | None = None,
                 task: str | None = None, image_size: int | None = None,
                 max_pixels: int | None = None, answers: Sequence[str] | None = None,
                 path: str | os.PathLike[str] | None = None) -> None:
        self.model = model.eval()
        self.path = None if path is None else Path(path)  # where it was loaded from
        self.tokenizer = tokenizer
        self.name = name
        self.task = task  # what the checkpoint was fine-tuned for, when known
        # input resolution the model was trained at, for every image task (None: the official
        # per-task sizes); models trained here record it in their folder
        self.image_size = image_size
        # largest image file (or bytes) decoded, checked from its header; None: the default
        # of ofa.preprocess.read_image ($OFA_MAX_PIXELS, else 40 M). In-memory images are
        # never capped.
        self.max_pixels = None if max_pixels is None else check_max_pixels(max_pixels)
        # the candidate answers the checkpoint was trained with, when its folder has them
        # (the server's default VQA answer list)
        self.answers = None if answers is None else list(answers)
        # files tasks need besides the model (TASKS[...].parts: the VQGAN, CLIP), by name: a
        # path until first used, then the loaded model (see attach)
        self.parts: dict[str, Any] = {}

    def __repr__(self) -> str:
        return (f"OFA(name={self.name!r}, task={self.task!r}, size={self.model.config.name!r},"
                f" device={self.device}, dtype={self.dtype})")

    @property
    def device(self) -> torch.device:
        return self.model.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.embed_tokens.weight.dtype

    # ------------------------------------------------------------------ tasks
    def run(self, task: str, images: Any = None, *, batch_size: int | None = None,
            progress: bool = False, errors: str = "raise", **inputs: Any) -> dict | list[dict]:
        """Run any task of :data:`ofa.tasks.TASKS` by name: the typed methods below call it.

        ``inputs`` are the task's fields by name (``ofa.tasks.TASKS[task].fields``: one value
        per input, or one for all inputs, for per-input fields; one value for options), and,
        for tasks that decode, :class:`~ofa.generate.GenerationConfig` fields. A list of
        images or of per-input values gives a list of results; ``errors="return"`` turns a bad
        input into ``{"input", "error"}`` instead of raising. ``batch_size``: inputs run
        together (default 8); for a drawing task, whose inputs run one by one, the samples
        decoded together (default: all).
        """
        spec = get_task(task)
        declared = {f.name: f for f in spec.fields}
        inputs = {k: v for k, v in inputs.items() if v is not None}
        per_input = {k: v for k, v in inputs.items() if k in declared and declared[k].per_input}
        options = {k: v for k, v in inputs.items() if k in declared and k not in per_input}
        decoding = {k: v for k, v in inputs.items() if k not in declared}
        missing = [f.name for f in spec.input_fields if f.required and f.name not in per_input]
        if missing:
            raise InputError(f"the {spec.name} task needs {', '.join(missing)}")
        if spec.image == "none" and images is not None:
            raise InputError(f"the {spec.name} task takes no image")
        if spec.image == "required" and images is None:
            raise InputError(f"the {spec.name} task needs an image")
        if images is not None:
            self._require_images(spec.summary.lower())
        require_language(spec, self.tokenizer)
        configured = spec.configure(self.task, **options)
        columns = {k: self._column(declared[k], v) for k, v in per_input.items()}
        image_list = None if images is None else self._as_list(images)
        lengths = {} if image_list is None else {"images": len(image_list)}
        lengths.update({f"{k} values": len(c) for k, c in columns.items()})
        n = max(lengths.values(), default=1)
        if any(m not in (1, n) for m in lengths.values()):
            raise InputError(" but ".join(f"{m} {what}" for what, m in lengths.items()))
        items = [(None if image_list is None else image_list[i if len(image_list) > 1 else 0],
                  {k: c[i if len(c) > 1 else 0] for k, c in columns.items()})
                 for i in range(n)]
        candidates = configured.candidates()
        if configured.kind == "draw":
            if decoding:
                raise InputError(f"the {spec.name} task samples with the official settings; "
                                 f"it takes no decoding options ({', '.join(decoding)})")
            out = self._draw(configured, items, batch_size, progress, errors)
        elif candidates is None:
            out = self._generate(configured, items, decoding, configured.constraint(
                self.tokenizer), batch_size or 8, progress, errors)
        else:
            if decoding:
                raise InputError(f"the {spec.name} task scores fixed answers; it takes no "
                                 f"decoding options ({', '.join(decoding)})")
            out = self._score(configured, items, list(candidates), batch_size or 8, progress,
                              errors)
        batched = _is_batch(images) or any(self._is_column(declared[k], v)
                                           for k, v in per_input.items())
        return out if batched else out[0]

    def caption(self, images, *, prompt: str | None = None, batch_size: int = 8,
                progress: bool = False, errors: str = "raise", **decoding) -> dict | list[dict]:
        """Describe each image (official: beam 5, no-repeat 3-grams, at most 16 tokens)."""
        return self.run("caption", images, prompt=prompt, batch_size=batch_size,
                        progress=progress, errors=errors, **decoding)

    def vqa(self, images, questions, *, answers: Sequence[str] | None = None,
            mode: str = "beam", objects: Sequence[str] | Sequence[Sequence[str]] | None = None,
            zero_shot: bool | None = None, batch_size: int = 8, progress: bool = False,
            errors: str = "raise", **decoding) -> dict | list[dict]:
        """Answer questions about images.

        ``mode``: ``beam`` (beam search, constrained to ``answers`` when given), ``all``
        (score every candidate in ``answers``; what the published numbers use) or ``open``
        (unconstrained). ``zero_shot`` (default: unless the checkpoint is a VQA fine-tune)
        uses the pre-trained model's settings: no question prefix, no trie, beam 20.
        ``objects``: VinVL tags per image for fine-tuned checkpoints trained with them.
        """
        return self.run("vqa", images, question=questions, answers=answers, mode=mode,
                        objects=objects, zero_shot=zero_shot, batch_size=batch_size,
                        progress=progress, errors=errors, **decoding)

    def ground(self, images, texts, *, bins_only: bool = False, batch_size: int = 8,
               progress: bool = False, errors: str = "raise", **decoding) -> dict | list[dict]:
        """Locate the region a referring expression describes: ``box`` = [x0, y0, x1, y1] in
        original-image pixels (None if the model did not emit 4 location tokens)."""
        return self.run("ground", images, text=texts, bins_only=bins_only,
                        batch_size=batch_size, progress=progress, errors=errors, **decoding)

    def ocr(self, images, *, document: bool = False, batch_size: int = 8,
            progress: bool = False, errors: str = "raise", **decoding) -> dict | list[dict]:
        """Read the text in an image (an OFA-OCR checkpoint): ``text`` without spaces.
        ``document``: OFA-OCR's document mode (one long line read as four rows)."""
        return self.run("ocr", images, document=document, batch_size=batch_size,
                        progress=progress, errors=errors, **decoding)

    def glue(self, texts, texts2=None, *, dataset: str = "sst2", batch_size: int = 8,
             progress: bool = False, errors: str = "raise") -> dict | list[dict]:
        """Text-only understanding (GLUE) as OFA asks it: ``dataset`` (sst2, cola, mrpc, qqp,
        qnli, rte, mnli) picks the prompt and the label words scored; ``texts2`` the second
        text of the pair datasets."""
        return self.run("glue", None, text=texts, text2=texts2, dataset=dataset,
                        batch_size=batch_size, progress=progress, errors=errors)

    def entail(self, images, hypotheses, *, premises: str | Sequence[str] | None = None,
               batch_size: int = 8, progress: bool = False,
               errors: str = "raise") -> dict | list[dict]:
        """Visual entailment: ``answer`` yes / no / maybe (``label`` entailment /
        contradiction / neutral) by scoring the three answers, as the official evaluation."""
        return self.run("entail", images, hypothesis=hypotheses, premise=premises,
                        batch_size=batch_size, progress=progress, errors=errors)

    def classify(self, images, class_names: Sequence[str], *, topk: int = 5,
                 batch_size: int = 8, progress: bool = False,
                 errors: str = "raise") -> dict | list[dict]:
        """Rank ``class_names`` for each image by the summed log-prob of the name:
        ``label`` and ``topk`` (``[{"label", "score"}]``, best first)."""
        return self.run("classify", images, classes=class_names, topk=topk,
                        batch_size=batch_size, progress=progress, errors=errors)

    def summarize(self, texts, *, batch_size: int = 8, progress: bool = False,
                  errors: str = "raise", **decoding) -> dict | list[dict]:
        """Summarise articles (text only; official Gigaword settings)."""
        return self.run("summarize", None, text=texts, batch_size=batch_size,
                        progress=progress, errors=errors, **decoding)

    def generate(self, prompts, images=None, *, batch_size: int = 8, progress: bool = False,
                 errors: str = "raise", **decoding) -> dict | list[dict]:
        """Follow a free instruction (any prompt), with an image or without."""
        return self.run("generate", images, prompt=prompts, batch_size=batch_size,
                        progress=progress, errors=errors, **decoding)

    def imagine(self, text, *, samples: int = 24, top: int = 4, seed: int = 0,
                rank: str | None = None, vqgan: Any = None, clip: Any = None,
                batch_size: int | None = None, progress: bool = False):
        """Text-to-image as the official evaluation runs it: ``samples`` draws of 1024 image
        codes (top-k 256), decoded by the VQGAN and ranked (``rank``): by CLIP, the official
        ranking (default when CLIP weights are there), by the model's own log p(caption |
        image) (``"caption"``; default for a model that also captions), or by the samples'
        log-probability (``"logprob"``; default for a text-to-image fine-tune). Returns an
        :class:`ofa.imagegen.imagine.Imagined` (a list of them for a list of texts) with the
        ``top`` best PIL images and their scores. ``vqgan`` / ``clip``: a path or a loaded
        model, attached for later calls (see :meth:`attach`).
        ``batch_size``: samples decoded together (default: all; fewer bounds memory, and the
        draws depend on it)."""
        from .imagegen.imagine import Imagined

        self.attach(vqgan=vqgan, clip=clip)
        out = self.run("imagine", None, text=text, samples=samples, top=top, seed=seed,
                       rank=rank, batch_size=batch_size, progress=progress)
        results = out if isinstance(out, list) else [out]
        drawn = [Imagined(r["text"], r["images"], r["scores"], r["codes"], r["ranked_by"],
                          r["samples"]) for r in results]
        return drawn if isinstance(out, list) else drawn[0]

    def attach(self, **parts: Any) -> OFA:
        """Give the model the files a task needs besides it, by the part's name (``vqgan=``,
        ``clip=``: ``ofa.tasks.TASKS[task].parts``): a path, loaded at first use, or a loaded
        model. None leaves a part as it is; without one, a task looks beside the checkpoint
        (``vqgan/``, ``clip/``)."""
        known = {p.name for t in TASKS.values() for p in t.parts}
        unknown = sorted(set(parts) - known)
        if unknown:
            raise InputError(f"unknown model parts: {', '.join(unknown)}; known: "
                             f"{', '.join(sorted(known))}")
        self.parts.update({k: v for k, v in parts.items() if v is not None})
        return self

    def drawing_model(self) -> OFAModel:
        """The model that draws: the ``draw/`` model beside the checkpoint when there is one
        (loaded once and kept; the embedded demo's), else this model."""
        from .imagegen.imagine import resolve_drawer

        if "drawer" not in self.parts:
            folder = None if self.path is None or not self.path.is_dir() else self.path
            self.parts["drawer"] = resolve_drawer(self.model, folder)
        return self.parts["drawer"]

    def drawing_parts(self, rank: str | None = None) -> tuple[Any, Any]:
        """The VQGAN and the ranker text-to-image uses. The VQGAN and CLIP are attached
        (loaded once and kept), else the ``vqgan/`` and ``clip/`` folders beside the
        checkpoint; no VQGAN is an InputError saying how to get one, nor is CLIP for
        ``rank="clip"``. ``rank`` None picks CLIP when there is one, else the model's own
        caption likelihood unless it was fine-tuned for text-to-image only, else None (the
        samples' log-probability)."""
        from .imagegen.imagine import resolve_clip, resolve_vqgan
        from .imagegen.rank import CaptionRanker
        from .pretrained import lookup

        folder = None if self.path is None or not self.path.is_dir() else self.path
        try:  # a registry entry may say how to get its VQGAN
            entry = lookup(self.name) if self.name else None
        except InputError:
            entry = None
        component = None if entry is None else entry.component("vqgan")
        vqgan = resolve_vqgan(self.parts.get("vqgan"), folder, self.device,
                              "" if component is None else component.hint)
        self.parts["vqgan"] = vqgan
        if rank in (None, "clip"):
            wanted = self.parts.get("clip", True if rank == "clip" else None)
            clip = resolve_clip(wanted, folder, self.device)
            if clip is not None:
                self.parts["clip"] = clip
                return vqgan, clip
        if rank == "caption" or (rank is None and self.task != "imagine"):
            return vqgan, CaptionRanker(self.model, self.tokenizer, self.image_size)
        return vqgan, None

    # ------------------------------------------------------------------ plumbing
    def _require_images(self, what: str) -> None:
        if self.task in TASKS and TASKS[self.task].image == "none":
            raise InputError(f"{self.name or 'this model'} is a text-only ({self.task}) model; "
                             f"{what} needs an image model such as ofa-base or a fine-tune")

    @staticmethod
    def _is_column(field: TaskField, value: Any) -> bool:
        """Whether ``value`` holds one value per input (a list; for a list-valued field, a
        list of lists)."""
        if field.kind == "texts":
            return _is_batch(value) and bool(value) and _is_batch(value[0])
        return _is_batch(value)

    def _column(self, field: TaskField, value: Any) -> list:
        return list(value) if self._is_column(field, value) else [value]

    @staticmethod
    def _as_list(x: Any) -> list:
        return list(x) if _is_batch(x) else [x]

    def _prepare(self, task: Task, transform: ImageTransform | None, image: Any,
                 fields: dict) -> Example:
        label = _label(image, fields)
        _check_text_fields(fields)
        ex = task.prepare(self.tokenizer, label, **{k: v for k, v in fields.items()
                                                    if v is not None})
        if image is not None:
            if transform is None:
                raise InputError(f"the {task.name} task takes no image")
            tensor, sizes = transform.batch([image])
            ex.image, ex.image_size = tensor[0], sizes[0]
        return ex

    def _batches(self, task: Task, items: list, batch_size: int, progress: bool,
                 errors: str, results: list) -> Iterator[list[tuple[int, Example]]]:
        """Prepared examples in batches; a bad input becomes an error result (or raises)."""
        if errors not in ("raise", "return"):
            raise InputError(f"errors must be 'raise' or 'return', got {errors!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
        # a checkpoint trained at its own size is fed at that size
        transform = (None if task.preprocess is None else ImageTransform.from_cfg(
            task.preprocess.with_size(self.image_size), max_pixels=self.max_pixels))
        bar = tqdm(total=len(items), disable=not progress, unit="input", dynamic_ncols=True)
        # inputs of similar text length share a batch, which limits padding; results keep
        # the input order (they are stored by index) and equal lengths keep theirs
        order = sorted(range(len(items)), key=lambda i: _text_length(items[i][1]))
        try:
            for start in range(0, len(items), batch_size):
                batch = []
                for i in order[start:start + batch_size]:
                    image, fields = items[i]
                    try:
                        batch.append((i, self._prepare(task, transform, image, fields)))
                    except OFAError as e:
                        if errors == "raise":
                            raise
                        # printable: a message may quote a file name that is not UTF-8
                        results[i] = {"input": _label(image, fields), "error": printable(str(e))}
                if batch:
                    yield batch
                bar.update(min(batch_size, len(items) - start))
        finally:
            bar.close()

    def _tensors(self, batch: list[tuple[int, Example]]):
        ids = pad_batch([ex.source for _, ex in batch]).to(self.device)
        with_image = [ex.image is not None for _, ex in batch]
        images = mask = None
        if any(with_image):
            shape = next(ex.image.shape for _, ex in batch if ex.image is not None)
            images = torch.stack([ex.image if ex.image is not None else torch.zeros(shape)
                                  for _, ex in batch]).to(self.device, self.dtype)
            mask = None if all(with_image) else torch.tensor(with_image, device=self.device)
        return ids, images, mask

    def _generate(self, task: Task, items: list, decoding: dict, trie: Trie | None,
                  batch_size: int, progress: bool, errors: str) -> list[dict]:
        try:
            config = task.generation_config(self.model.config, self.tokenizer).replace(
                **decoding)
        except TypeError as e:
            raise InputError(f"unknown decoding option: {e}") from None
        results: list = [None] * len(items)
        for batch in self._batches(task, items, batch_size, progress, errors, results):
            ids, images, mask = self._tensors(batch)
            prefix = None
            if any(ex.prefix for _, ex in batch):
                prefix = pad_batch([ex.prefix for _, ex in batch]).to(self.device)
            hyps = generate(self.model, ids, images, mask, config, prefix_tokens=prefix,
                            trie=trie)
            for (i, ex), nbest in zip(batch, hyps, strict=True):
                best = nbest[0]
                results[i] = {"input": ex.input, **task.result(self.tokenizer, ex, best),
                              "tokens": best.tokens.tolist(), "score": float(best.score)}
                if config.nbest > 1:
                    results[i]["nbest"] = [
                        {**task.result(self.tokenizer, ex, h), "tokens": h.tokens.tolist(),
                         "score": float(h.score)} for h in nbest]
        return results

    def _score(self, task: Task, items: list, candidates: list[str], batch_size: int,
               progress: bool, errors: str) -> list[dict]:
        """All-candidate scoring: one encoder pass per input, every candidate scored."""
        cand_ids = encode_answers(self.tokenizer, candidates)
        trie = Trie([BOS, *c, EOS] for c in cand_ids)
        results: list = [None] * len(items)
        for batch in self._batches(task, items, batch_size, progress, errors, results):
            ids, images, mask = self._tensors(batch)
            with torch.no_grad():
                enc = self.model.encode(ids, images, mask)
            prompts = [[BOS, *ex.prefix] for _, ex in batch]
            scores = score_candidates(self.model, enc, prompts, cand_ids, trie)
            for row, (i, ex) in enumerate(batch):
                table = {c: float(s) for c, s in zip(candidates, scores[row].tolist(),
                                                     strict=True)}
                best = int(scores[row].argmax())
                results[i] = {"input": ex.input, **task.result_from_scores(ex, table),
                              "tokens": [*ex.prefix, *cand_ids[best], EOS],
                              "score": table[candidates[best]], "scores": table}
        return results


    def _draw(self, task: Any, items: list, batch_size: int | None, progress: bool,
              errors: str) -> list[dict]:
        """Text-to-image for each input in turn (its samples are the batch)."""
        from .imagegen.imagine import imagine

        if errors not in ("raise", "return"):
            raise InputError(f"errors must be 'raise' or 'return', got {errors!r}")
        vqgan, ranker = self.drawing_parts(task.rank)
        results = []
        for _, fields in items:
            label = _label(None, fields)
            try:
                _check_text_fields(fields)
                r = imagine(self.drawing_model(), self.tokenizer, fields.get("text"), vqgan,
                            ranker, samples=task.samples, top=task.top, seed=task.seed,
                            batch_size=batch_size, progress=progress)
            except OFAError as e:
                if errors == "raise":
                    raise
                results.append({"input": label, "error": printable(str(e))})
                continue
            results.append({"input": label, "text": r.text, "images": r.images,
                            "scores": r.scores, "ranked_by": r.ranked_by,
                            "samples": r.indices, "codes": r.codes})
        return results


# ---------------------------------------------------------------------- loading
def load(name_or_path: str | os.PathLike[str], device: str | torch.device | None = None,
         dtype: str | torch.dtype | None = None, *, ema: bool | None = None,
         vocab: str | os.PathLike[str] | None = None, progress: bool = True,
         max_pixels: int | None = None) -> OFA:
    """Load a model by local path (a checkpoint in any layout: fairseq .pt, HF folder,
    mmpretrain .pth, native folder), registry name or alias (downloaded and converted once
    into ``$OFA_HOME``; ``"shapes-demo"`` is bundled) or HF hub id (``owner/name``), in that
    order (:func:`ofa.locate.locate_model`).

    ``device``: cpu / cuda / auto (default: cuda when available). ``dtype``: float32 (default:
    exact parity), float16, bfloat16, or auto: the fastest dtype the device runs natively (bf16
    on CPUs with AVX512-BF16 or AMX and on recent GPUs, fp16 on other GPUs, else fp32); bf16 on
    a CPU without native bf16 warns once (it is emulated: many times slower than fp32); int8:
    int8 decoder and output-table weights, the rest in the CPU's fastest native float
    (:mod:`ofa.model.quantize`). On the CPU, glibc's malloc is set to keep freed memory for
    reuse (:func:`ofa.hardware.keep_freed_memory`; ``OFA_KEEP_FREED_MEMORY=0`` turns it off).
    ``vocab``: tokenizer folder for checkpoints that ship none.
    ``max_pixels``: the largest image file or bytes decoded (width x height, checked from the
    header before decoding; default ``$OFA_MAX_PIXELS``, else 40,000,000).
    """
    from .checkpoints import model_answers, model_from_checkpoint, read_checkpoint
    from .convert import check_vocabulary, find_tokenizer
    from .hardware import keep_freed_memory, warn_if_emulated
    from .locate import locate_model
    from .pretrained import canonical_task, lookup

    dev = parse_device(device)
    int8 = dtype == "int8"
    if int8 and dev.type != "cpu":
        raise InputError("int8 runs on the CPU (PyTorch's dynamic int8 kernels); use "
                         "device cpu, or float16 / bfloat16 on a GPU")
    dt = torch.float32 if int8 else parse_dtype(dtype, dev)
    if dt is not None and dtype != "auto":
        warn_if_emulated(dt, dev.type)
    if max_pixels is not None:
        check_max_pixels(max_pixels)  # before any download
    path = locate_model(name_or_path, progress=progress)
    ckpt = read_checkpoint(path, ema=ema)
    tokenizer = find_tokenizer(vocab, ckpt.tokenizer_dir)
    check_vocabulary(tokenizer, ckpt.config.vocab_size, str(path))
    task = canonical_task(ckpt.meta.get("task"))
    name = ckpt.meta.get("registry_name") or ckpt.meta.get("hub_repo")
    if ckpt.meta.get("task") is None:  # an official file under its published name tells its task
        entry = lookup(ckpt.meta.get("file", ""))
        if entry is not None:
            task, name = canonical_task(entry.task), entry.name
    if dev.type == "cpu":  # inference's large activations: reused, not page-faulted again
        keep_freed_memory()
    model = model_from_checkpoint(ckpt, device=dev, dtype=dt)
    if int8:
        from .model.quantize import quantize_int8

        quantize_int8(model)
    return OFA(model, tokenizer, name=name or path.name, task=task,
               image_size=ckpt.meta.get("image_size"), max_pixels=max_pixels,
               answers=model_answers(path), path=path)


_LOADED: dict[tuple[str, str], OFA] = {}


def inference_model(model: str | OFA, *args: Any, device: str | None = None,
                    **kwargs: Any) -> dict:
    """mmpretrain-compatible one-call inference: the same arguments and result keys as
    ``mmpretrain.inference_model`` for its OFA models, so switching is an import change.

    ``inference_model("ofa-base_3rdparty-finetuned_caption", img)`` -> ``{"pred_caption"}``;
    ``..._vqa`` / ``..._zeroshot_vqa`` with ``(img, question)`` -> ``{"question",
    "pred_answer"}``; ``..._refcoco`` with ``(img, text)`` -> ``{"pred_bboxes": tensor[[x1,
    y1, x2, y2]]}``. Loaded models are kept for later calls.
    """
    if isinstance(model, OFA):
        ofa = model
    else:
        key = (str(model), str(device))
        if key not in _LOADED:
            _LOADED[key] = load(model, device=device)
        ofa = _LOADED[key]
    task = ofa.task or "caption"
    if not args:
        raise InputError("inference_model needs an image")
    if task == "caption":
        return {"pred_caption": ofa.caption(args[0], **kwargs)["caption"]}
    if task in ("vqa", "pretrained"):
        if len(args) < 2:
            raise InputError("VQA models need (image, question)")
        r = ofa.vqa(args[0], args[1], **kwargs)
        return {"question": r["question"], "pred_answer": r["answer"]}
    if task == "ground":
        if len(args) < 2:
            raise InputError("grounding models need (image, text)")
        box = ofa.ground(args[0], args[1], **kwargs)["box"]
        return {"pred_bboxes": torch.tensor([box]) if box else torch.zeros(0, 4)}
    raise InputError(f"inference_model supports caption, VQA and grounding models; "
                     f"{ofa.name} is a {task} model: use ofa.load(...) and its methods")
