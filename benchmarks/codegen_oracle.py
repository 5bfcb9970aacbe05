"""Reference ids for code-mode (text-to-image) decoding: the official generator's port.

Runs ModelScope 1.40.2's copy of the official OFA/fairseq ``SequenceGenerator`` with
``gen_code=True`` and ``constraint_range="50265,58457"`` (only ``<code_*>`` ids, plus the
specials that the generator itself blocks until max_len) on the oracle's deterministic
synthesized weights, and writes one fixture per case to ``tests/fixtures/codegen/<case>.json``
(ids, scores, positional scores and the whole n-best, with provenance). The fixtures are
checked by ``tests/test_generate_code_parity.py``.

This script is NOT run by the test suite and does not import ``ofa``. It needs ModelScope's
environment, built by the oracle's own recipe (only its modelscope venv is used)::

    cp -r ../shared/oracle /tmp/oracle && /tmp/oracle/setup.sh /tmp/ofa-oracle-env
    PYTHONPATH=../shared/oracle/stubs OMP_NUM_THREADS=1 \\
        /tmp/ofa-oracle-env/venv-modelscope/bin/python benchmarks/codegen_oracle.py \\
        [--oracle ../shared/oracle] [--out tests/fixtures/codegen] [--configs ofa-tiny ofa-base]

(``stubs/`` stands in for ``fairseq``, which ModelScope's OFA package imports.) Each case:
one OFA size, one ``code_image_size`` (the decoder's code grid is ``code_image_size // 8``
squared, its image position ids ``[0] + grid + [1024] * 768`` are built by ModelScope from
that setting), a batch of two text-to-image prompts (no image: ``patch_images=None``, as
ModelScope's text-to-image preprocessor does), greedy (beam 1) and beam 5 searches with
``min_len = max_len_b = grid**2``, ``max_len_a = 0``, no n-gram blocking, normalized scores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CAPTIONS = ["a dog running on the beach", "a red car parked next to a tall building"]
PROMPT = " what is the complete image? caption: {}"
CODE_RANGE = (50265, 58457)
SALT = "v2"
# (case name, OFA size, code_image_size); the code grid is (size // 8) ** 2 tokens
CASES = [("tiny_grid8", "ofa-tiny", 64), ("tiny_grid16", "ofa-tiny", 128),
         ("base_grid8", "ofa-base", 64)]
RUNS = {"greedy": 1, "beam5": 5}


def state_digest(sd) -> str:
    """sha256 over the sorted float keys and their float32 bytes (tied keys once per name)."""
    import torch

    h = hashlib.sha256()
    for k in sorted(sd):
        v = sd[k]
        if v.is_floating_point():
            h.update(k.encode())
            h.update(v.detach().to(torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def f32(values):
    """Shortest decimal that reads back as the same float32 (the generator's dtype)."""
    import numpy as np

    return [float(str(v)) for v in np.asarray(values, dtype=np.float32).reshape(-1)]


def dumps(obj) -> str:
    """Indented JSON with every list of numbers on one line."""
    text = json.dumps(obj, indent=1)
    return re.sub(r"\[\s*([-0-9.e,\s]+?)\s*\]",
                  lambda m: "[" + ", ".join(m.group(1).replace(",", " ").split()) + "]", text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--oracle", type=Path, default=ROOT.parent / "shared" / "oracle")
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "codegen")
    ap.add_argument("--configs", nargs="*", default=None, help="limit to these OFA sizes")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: on a busy machine 2 were up to 10x slower)")
    args = ap.parse_args()
    oracle = args.oracle.resolve()
    os.environ.setdefault("OFA_ORACLE_THREADS", str(args.threads))
    sys.path.insert(0, str(oracle))

    import make_vocab  # the oracle's tokenizer-dir builder (real OFA ids)
    import run_modelscope as RM  # the oracle's ModelScope runner: config, tokenizer, imports
    import synth_weights as SW
    import torch
    from modelscope.models.multi_modal.ofa import OFAModel
    from modelscope.models.multi_modal.ofa.generate import sequence_generator as sg

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tok_dir:
        vocab = make_vocab.build(str(oracle.parent / "bpe"))
        (Path(tok_dir) / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
        lines = (oracle.parent / "bpe" / "vocab.bpe").read_text(encoding="utf-8").splitlines()
        if not lines[0].startswith("#version"):
            lines.insert(0, "#version: 0.2")
        (Path(tok_dir) / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        tok = RM.build_tokenizer(tok_dir)  # asserts the oracle's tokenizer unit tests

    texts = [PROMPT.format(c) for c in CAPTIONS]
    prompt = tok(texts, return_tensors="pt", padding=True).input_ids
    args.out.mkdir(parents=True, exist_ok=True)
    for name, config, code_image_size in CASES:
        if args.configs and config not in args.configs:
            continue
        t0 = time.time()
        cfg = RM.ofa_config(config)
        cfg.code_image_size = code_image_size
        torch.manual_seed(0)
        model = OFAModel(cfg).eval()
        sd = model.state_dict()
        synth = SW.synth_state_dict([(k, tuple(v.shape), v.dtype) for k, v in sd.items()], SALT,
                                    SW.hf_to_mmpretrain)
        res = model.load_state_dict(synth, strict=False)
        assert not res.unexpected_keys, res.unexpected_keys
        assert all(not sd[k].is_floating_point() for k in res.missing_keys), res.missing_keys
        build_s = time.time() - t0
        window = code_image_size // 8
        n = window * window
        pos_idx = model.decoder.image_position_idx
        assert pos_idx[1:n + 1].tolist() == [r * cfg.image_bucket_size + c + 1
                                             for r in range(window) for c in range(window)]
        net_input = {"input_ids": prompt, "patch_images": None,
                     "patch_masks": torch.zeros(len(texts), dtype=torch.bool)}
        runs = {}
        for run, beam in RUNS.items():
            settings = dict(beam_size=beam, max_len_a=0, max_len_b=n, min_len=n,
                            no_repeat_ngram_size=0, len_penalty=1.0, normalize_scores=True,
                            gen_code=True, constraint_range=f"{CODE_RANGE[0]},{CODE_RANGE[1]}")
            gen = sg.SequenceGenerator(tokenizer=tok, **settings)
            t1 = time.time()
            with torch.no_grad():
                hyps = gen.generate([model], {"net_input": net_input})
            dt = time.time() - t1
            ids = [h[0]["tokens"].tolist() for h in hyps]
            for row in ids:  # n codes then the forced EOS
                assert len(row) == n + 1 and row[-1] == 2, row
                assert all(CODE_RANGE[0] <= t < CODE_RANGE[1] for t in row[:-1]), row
            runs[run] = dict(
                settings=settings, seconds=round(dt, 2), ids=ids,
                score=[f32(h[0]["score"])[0] for h in hyps],
                positional_scores=[f32(h[0]["positional_scores"]) for h in hyps],
                nbest=[[dict(ids=x["tokens"].tolist(), score=f32(x["score"])[0],
                             positional_scores=f32(x["positional_scores"])) for x in h]
                       for h in hyps])
            print(f"{name} {run}: {dt:.1f}s first ids {[r[:6] for r in ids]}", flush=True)
        fixture = dict(
            case=name, task="text-to-image code generation (gen_code)",
            config=config, arch=RM.ARCH[config], code_image_size=code_image_size,
            code_grid=[window, window], num_codes=n,
            weights=dict(salt=SALT, recipe="shared/oracle/synth_weights.py (mmpretrain keys "
                         "via synth_weights.hf_to_mmpretrain)",
                         modelscope_state_sha256=state_digest(synth)),
            inputs=dict(prompt_texts=texts, prompt_ids=prompt.tolist(), patch_images=None,
                        patch_masks=[False] * len(texts)),
            reference=dict(
                implementation="modelscope OFAModel + modelscope OFA SequenceGenerator "
                               "(port of OFA-Sys/OFA models/sequence_generator.py)",
                versions=RM.VERSIONS, threads=args.threads, device="cpu", dtype="float32",
                ofa_config={k: v for k, v in cfg.to_dict().items() if k in (
                    "d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads",
                    "encoder_ffn_dim", "resnet_type", "normformer", "attn_scale_factor",
                    "entangle_position_embedding", "disable_entangle", "token_bucket_size",
                    "image_bucket_size", "code_image_size", "code_layernorm_embedding",
                    "max_position_embeddings")},
                image_position_idx_head=pos_idx[:n + 2].tolist(),
                build_and_load_s=round(build_s, 2),
                script="benchmarks/codegen_oracle.py"),
            id_convention="fairseq tokens: no BOS, num_codes <code_*> ids then EOS 2; score = "
                          "sum of positional_scores / (num_codes + 1) (normalize_scores, "
                          "lenpen 1); nbest = every finished hypothesis, best first; floats "
                          "are float32 values written as their shortest decimal",
            generation=runs)
        path = args.out / f"{name}.json"
        path.write_text(dumps(fixture) + "\n")
        print(f"{name}: {time.time() - t0:.1f}s -> {path}", flush=True)
        del model, synth, sd


if __name__ == "__main__":
    main()
