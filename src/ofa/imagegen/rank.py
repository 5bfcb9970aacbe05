"""Ranking drawings by the model's own reading of them: log p(caption | image) under the
captioning prompt, i.e. OFA scoring how well each of its samples shows the caption. It needs no
weights besides the model, so it ranks where no CLIP is at hand (an offline model trained on
both tasks); CLIP stays the ranking of the official text-to-image checkpoints, which were not
fine-tuned to caption."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from PIL import Image

from ..generate import score_candidates
from ..preprocess import ImageTransform
from ..tasks.caption import CaptionTask
from ..tokenizer import BOS

if TYPE_CHECKING:
    from ..model import OFAModel
    from ..tokenizer import OFATokenizer


class CaptionRanker:
    """``scores(images, caption)`` -> [N] summed log-probability of the caption, as the
    captioning task's training target, given each image (higher: the image shows it
    better). ``image_size``: the model's input size (None: the captioning task's)."""

    name = "caption"

    def __init__(self, model: OFAModel, tokenizer: OFATokenizer, image_size: int | None = None,
                 batch_size: int = 8) -> None:
        task = CaptionTask()
        self.model, self.tokenizer, self.task, self.batch_size = model, tokenizer, task, batch_size
        self.transform = ImageTransform.from_cfg(task.preprocess.with_size(image_size))

    @torch.inference_mode()
    def scores(self, images: Sequence[Image.Image] | torch.Tensor, caption: str) -> torch.Tensor:
        if isinstance(images, torch.Tensor):  # uint8 [N, H, W, 3], as the VQGAN decodes
            images = [Image.fromarray(a) for a in images.cpu().numpy()]
        target = self.tokenizer.encode(self.task.target_text({"caption": caption})[0],
                                       add_bos_eos=False)
        source = self.task.prepare(self.tokenizer, "").source
        device = self.model.embed_tokens.weight.device
        dtype = self.model.embed_tokens.weight.dtype
        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = list(images[start:start + self.batch_size])
            pixels, _ = self.transform.batch(chunk)
            ids = torch.tensor([source] * len(chunk), device=device)
            enc = self.model.encode(ids, pixels.to(device, dtype))
            out.append(score_candidates(self.model, enc, [[BOS]] * len(chunk), [target])[:, 0])
        return torch.cat(out).float().cpu()
