"""Measure fp32 parity with the reference implementations and write it to BENCHMARKS.md.

    .venv/bin/python benchmarks/parity.py [--shared ../shared] [--write BENCHMARKS.md]

Loads the oracle's synthesized weights from each checkpoint layout through
``ofa.checkpoints.load_model`` and reports the max abs difference of encoder outputs and
logits against mmpretrain 1.2.0 and ModelScope (the fairseq port) for every stored case.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from ofa.checkpoints import load_model  # noqa: E402
from ofa.tokenizer import OFATokenizer  # noqa: E402

from oracle_cases import case_names, compare_generation, measure, write_checkpoint  # noqa: E402

BEGIN, END = "<!-- parity:begin -->", "<!-- parity:end -->"
GEN_BEGIN, GEN_END = "<!-- generation:begin -->", "<!-- generation:end -->"


def replace_block(text: str, begin: str, end: str, block: str) -> str:
    if begin in text:
        return re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text,
                      flags=re.S)
    return text + "\n" + block + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--write", type=Path, default=None, help="update this markdown file")
    args = ap.parse_args()
    oracle = args.shared / "oracle"
    spec = importlib.util.spec_from_file_location("synth_weights", oracle / "synth_weights.py")
    synth = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(synth)

    tokenizer = OFATokenizer.from_dir(args.shared / "bpe")
    rows, gen_rows = [], []
    for config in ("ofa-tiny", "ofa-base"):
        keys = synth.read_keys(oracle / "keys" / f"{config}.mmpretrain.tsv")
        state = synth.synth_state_dict(keys, "v2")
        with tempfile.TemporaryDirectory() as tmp:
            for layout in ("mmpretrain", "fairseq", "hf"):
                sub = Path(tmp) / layout
                sub.mkdir()
                model = load_model(write_checkpoint(synth, state, layout, sub))
                for name in case_names(oracle, config):
                    d = measure(model, oracle, name)
                    rows.append((name, config, layout, d))
                    print(name, layout, {k: f"{v:.2e}" for k, v in d.items()}, flush=True)
                    if layout == "mmpretrain":
                        for run, r in compare_generation(model, tokenizer, oracle,
                                                         name).items():
                            gen_rows.append((name, run, r))
                            print(name, run, r, flush=True)
                del model
        del state

    lines = [BEGIN, "",
             "| case | config | loaded from | encoder vs mmpretrain | encoder vs modelscope | "
             "logits vs mmpretrain | logits vs modelscope | argmax equal |",
             "|---|---|---|---|---|---|---|---|"]
    for name, config, layout, d in rows:
        logits_mm = max(d["logits_head64.mmpretrain"], d["logits_full_rows.mmpretrain"])
        lines.append(f"| {name} | {config} | {layout} | {d['encoder.mmpretrain']:.1e} | "
                     f"{d['encoder.modelscope']:.1e} | {logits_mm:.1e} | "
                     f"{d['logits_head64.modelscope']:.1e} | "
                     f"{'yes' if d['argmax_equal'] else 'NO'} |")
    worst = max(max(v for k, v in d.items() if k != "argmax_equal") for *_, d in rows)
    lines += ["", f"Worst max abs diff over all rows: **{worst:.1e}** (tolerance 1e-4; the two "
              "references differ from each other by up to 4.4e-5).", "", END]
    table = "\n".join(lines)
    gen = [GEN_BEGIN, "",
           "| case | run | ids equal | n-best equal | max abs diff of scores |",
           "|---|---|---|---|---|"]
    for name, run, r in gen_rows:
        diff = "ids only" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.1e}"
        gen.append(f"| {name} | {run} | {'yes' if r['ids_equal'] else 'NO'} | "
                   f"{'yes' if r['nbest_equal'] else 'NO'} | {diff} |")
    worst_gen = max(r["max_abs_diff"] or 0.0 for *_, r in gen_rows)
    all_equal = all(r["ids_equal"] and r["nbest_equal"] for *_, r in gen_rows)
    gen += ["", f"Token ids {'equal in every run' if all_equal else 'DIFFER'}; worst score "
            f"difference **{worst_gen:.1e}** (tolerance 1e-4).", "", GEN_END]
    gen_table = "\n".join(gen)
    print(table)
    print(gen_table)
    if args.write:
        text = args.write.read_text() if args.write.exists() else ""
        text = replace_block(text, BEGIN, END, table)
        text = replace_block(text, GEN_BEGIN, GEN_END, gen_table)
        args.write.write_text(text)


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
