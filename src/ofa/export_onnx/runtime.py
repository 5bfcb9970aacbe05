"""``ONNXModel``: an export folder run with onnxruntime (encode, one step, greedy decoding)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..model.config import BOS_ID, EOS_ID, PAD_ID
from .common import MANIFEST_FILE, MANIFEST_FORMAT, io_names, require


@dataclass
class Step:
    logits: np.ndarray  # [N, 1, V]
    present: list[np.ndarray]  # present_key_0, present_value_0, present_key_1, ...


class ONNXModel:
    """An export folder run with onnxruntime: :meth:`encode`, :meth:`step`, :meth:`greedy`."""

    def __init__(self, out_dir: str | Path, providers: list[str] | None = None,
                 threads: int | None = None) -> None:
        require("onnxruntime")
        import onnxruntime as ort

        folder = Path(out_dir)
        try:
            self.manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise InputError(f"not an OFA ONNX export folder: {folder} ({e})") from None
        if self.manifest.get("format") != MANIFEST_FORMAT:
            raise InputError(f"{folder / MANIFEST_FILE} is not an OFA ONNX manifest")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        providers = providers or ["CPUExecutionProvider"]
        graphs = self.manifest["graphs"]
        self.encoder = ort.InferenceSession(str(folder / graphs["encoder"]["file"]), opts,
                                            providers=providers)
        self.decoder = ort.InferenceSession(str(folder / graphs["decoder_step"]["file"]), opts,
                                            providers=providers)
        cfg = self.manifest["model_config"]
        self.num_layers = cfg["decoder_layers"]
        self.heads = cfg["attention_heads"]
        self.head_dim = cfg["head_dim"]
        self.max_target_positions = cfg["max_target_positions"]
        self.image_size = self.manifest["image"]["size"]
        self.names = io_names(self.num_layers)

    def encode(self, input_ids: np.ndarray, images: np.ndarray | None = None,
               image_mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Encoder outputs by name. ``images`` None: a text-only batch (zero images, masked)."""
        input_ids = np.asarray(input_ids, dtype=np.int64)
        b = input_ids.shape[0]
        if images is None:
            images = np.zeros((b, 3, self.image_size, self.image_size), dtype=np.float32)
            image_mask = np.zeros(b, dtype=bool)
        elif image_mask is None:
            image_mask = np.ones(b, dtype=bool)
        feeds = {"input_ids": input_ids, "images": np.asarray(images, dtype=np.float32),
                 "image_mask": np.asarray(image_mask, dtype=bool)}
        outs = self.encoder.run(None, feeds)
        return dict(zip(self.names["encoder_outputs"], outs, strict=True))

    def empty_past(self, rows: int) -> list[np.ndarray]:
        shape = (rows, self.heads, 0, self.head_dim)
        return [np.zeros(shape, dtype=np.float32) for _ in range(2 * self.num_layers)]

    def step(self, input_ids: np.ndarray, encoder: dict[str, np.ndarray],
             past: list[np.ndarray]) -> Step:
        """One decoder step; ``encoder`` holds N rows (index it to expand/reorder)."""
        feeds = {"input_ids": np.asarray(input_ids, dtype=np.int64).reshape(-1, 1),
                 "encoder_padding_mask": encoder["encoder_padding_mask"],
                 "cross_pos_k": encoder["cross_pos_k"]}
        for name in self.names["decoder_inputs"]:
            if name.startswith("cross_") and name != "cross_pos_k":
                feeds[name] = encoder[name]
        feeds.update(zip(self.names["decoder_inputs"][-2 * self.num_layers:], past, strict=True))
        outs = self.decoder.run(None, feeds)
        return Step(outs[0], outs[1:])

    @staticmethod
    def select_rows(encoder: dict[str, np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
        """Encoder outputs for new rows (beams, finished rows dropped); cross_pos_k is shared."""
        return {k: (v if k == "cross_pos_k" else v[index]) for k, v in encoder.items()}

    def greedy(self, input_ids: np.ndarray, images: np.ndarray | None = None,
               image_mask: np.ndarray | None = None, *, max_len_b: int = 16,
               max_len_a: float = 0.0, min_len: int = 1, return_logits: bool = False
               ) -> list[list[int]] | tuple[list[list[int]], list]:
        """Greedy decoding with the rules of ``ofa.generate`` at ``beam_size=1``: PAD never,
        EOS not before ``min_len`` tokens, only EOS at step ``max_len`` =
        ``int(max_len_a * source length + max_len_b)`` (per row, capped by the decoder's
        positions); a finished row leaves the batch. Returns per row the tokens after BOS,
        ending with EOS (``Hypothesis.tokens``); ``return_logits`` also gives each step's
        (original row indices, logits [rows, V])."""
        input_ids = np.asarray(input_ids, dtype=np.int64)
        src_len = (input_ids != PAD_ID).sum(axis=1).astype(np.float64)
        max_len = (float(max_len_a) * src_len + int(max_len_b)).astype(np.int64)
        max_len = np.minimum(max_len, self.max_target_positions - 1)
        if (max_len < min_len).any():
            raise InputError(f"min_len={min_len} exceeds max_len={int(max_len.min())}")
        enc = self.encode(input_ids, images, image_mask)
        b = enc["encoder_padding_mask"].shape[0]
        alive = np.arange(b)
        out: list[list[int]] = [[] for _ in range(b)]
        tokens = np.full(b, BOS_ID, dtype=np.int64)
        past = self.empty_past(b)
        trace = []
        for step in range(int(max_len.max()) + 1):
            res = self.step(tokens, enc, past)
            logits = res.logits[:, -1, :].astype(np.float32)
            if return_logits:
                trace.append((alive.copy(), logits.copy()))
            scores = logits.copy()
            scores[:, PAD_ID] = -np.inf
            if step < min_len:
                scores[:, EOS_ID] = -np.inf
            at_max = max_len[alive] <= step
            if at_max.any():
                scores[at_max, :] = -np.inf
                scores[at_max, EOS_ID] = 0.0
            tokens = scores.argmax(axis=1)
            for row, t in zip(alive.tolist(), tokens.tolist(), strict=True):
                out[row].append(int(t))
            keep = np.nonzero(tokens != EOS_ID)[0]
            if keep.size == 0:
                break
            if keep.size < alive.size:
                enc = self.select_rows(enc, keep)
                res.present = [p[keep] for p in res.present]
            alive, tokens, past = alive[keep], tokens[keep], res.present
        return (out, trace) if return_logits else out
