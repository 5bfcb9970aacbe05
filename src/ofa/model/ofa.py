"""OFAModel: encoder + decoder over one shared token embedding (input and output)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import OFAConfig
from .decoder import DecoderCache, OFADecoder
from .encoder import EncoderOutput, OFAEncoder
from .packed import table_linear


def vocab_logits(hidden: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``hidden [..., D] @ weight[V, D]^T``. For fp32 on CPU this runs as ``weight @ hidden^T``:
    with a decoding step's few rows MKL streams the [V, D] table faster in that orientation
    (the same dot products; ``benchmarks/gemv.py`` measures it)."""
    if hidden.device.type != "cpu" or hidden.dtype != torch.float32:
        return F.linear(hidden, weight)
    rows = hidden.reshape(-1, hidden.shape[-1])
    return (weight @ rows.T).T.contiguous().reshape(*hidden.shape[:-1], weight.shape[0])


class OFAModel(nn.Module):
    """The OFA sequence-to-sequence model.

    Parameter names follow the official fairseq checkpoints, so their state dicts load as is
    (``encoder.embed_tokens.weight`` and ``decoder.embed_tokens.weight`` are the same tensor;
    the output projection reuses it and has no parameter of its own).
    """

    def __init__(self, config: OFAConfig) -> None:
        super().__init__()
        self.config = config
        embed_tokens = nn.Embedding(config.vocab_size, config.d_model, config.pad_token_id)
        self.encoder = OFAEncoder(config, embed_tokens)
        self.decoder = OFADecoder(config, embed_tokens)
        # an int8 copy of the tied output table for inference (ofa.model.quantize), else None
        self.vocab_projection: nn.Module | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """fairseq ``init_bert_params``: N(0, 0.02) linears and embeddings, zero pad row and
        zero relative-position tables; LayerNorm/BatchNorm keep their (1, 0) init."""
        for name, m in self.named_modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                if "rel_pos_table" in name:
                    nn.init.zeros_(m.weight)
                else:
                    nn.init.normal_(m.weight, std=0.02)
                    if m.padding_idx is not None:
                        nn.init.zeros_(m.weight[m.padding_idx])
            elif isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def rebuild_buffers(self) -> None:
        """Recompute the config-derived buffers (after ``to_empty`` from the meta device)."""
        idx = self.decoder.build_image_position_idx()
        self.decoder.image_position_idx = idx.to(self.decoder.image_position_idx.device)

    @property
    def embed_tokens(self) -> nn.Embedding:
        return self.encoder.embed_tokens

    def encode(self, input_ids: torch.Tensor, images: torch.Tensor | None = None,
               image_mask: torch.Tensor | None = None, sample_patches: int | None = None
               ) -> EncoderOutput:
        return self.encoder(input_ids, images, image_mask, sample_patches)

    def decode(self, tokens: torch.Tensor, encoder_out: EncoderOutput,
               cache: DecoderCache | None = None, code_mask: torch.Tensor | None = None,
               vocab: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [B, T, V] for decoder tokens (only the new ones when a cache is given);
        with ``vocab`` (output-table rows, e.g. ``embed_tokens.weight[ids]``) only those ids'
        logits [B, T, len(ids)]."""
        hidden = self.decoder(tokens, encoder_out, cache, code_mask)
        return self.logits(hidden) if vocab is None else vocab_logits(hidden, vocab)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Inference logits [..., V] over the whole vocabulary: the int8 table where the model
        is quantized, the packed table on the CPU (``ofa.model.packed``), else the table."""
        if self.vocab_projection is not None:
            return self.vocab_projection(hidden)
        logits = table_linear(self, "embed_tokens", hidden, self.embed_tokens.weight)
        return logits if logits is not None else vocab_logits(hidden, self.embed_tokens.weight)

    def forward(self, input_ids: torch.Tensor, decoder_input_ids: torch.Tensor,
                images: torch.Tensor | None = None, image_mask: torch.Tensor | None = None,
                code_mask: torch.Tensor | None = None,
                output_mask: torch.Tensor | None = None,
                code_rows: torch.Tensor | None = None,
                code_columns: torch.Tensor | None = None, sample_patches: int | None = None
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced logits [B, T, V]; with ``output_mask`` [B, T] (bool) only the [N, V]
        logits of the marked positions (training projects only the positions with a loss).
        With ``code_rows`` [K] (indices into those N) and ``code_columns`` [C] (vocabulary ids)
        it returns the other rows' logits [N - K, V] and the code rows' logits over those ids
        only [K, C]: a drawing's targets are image codes, 8k of the 59k ids. ``sample_patches``:
        see :meth:`OFAEncoder.forward`."""
        enc = self.encode(input_ids, images, image_mask, sample_patches)
        if output_mask is None:
            return self.decode(decoder_input_ids, enc, code_mask=code_mask)
        hidden = self.decoder(decoder_input_ids, enc, None, code_mask)[output_mask]
        weight = self.embed_tokens.weight
        if code_rows is None:
            return F.linear(hidden, weight)
        if code_columns is None:
            raise ValueError("code_rows needs code_columns")
        is_code = torch.zeros(hidden.shape[0], dtype=torch.bool, device=hidden.device)
        is_code[code_rows] = True
        return (F.linear(hidden[~is_code], weight),
                F.linear(hidden[code_rows], weight[code_columns.to(weight.device)]))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
