"""Code-mode (text-to-image) decoding parity with the official generator.

The fixtures in ``tests/fixtures/codegen`` hold the ids, scores and n-best lists of ModelScope
1.40.2's port of the official OFA/fairseq ``SequenceGenerator`` run with ``gen_code=True`` and
``constraint_range="50265,58457"`` on the oracle's synthesized weights (salt v2), written by
``benchmarks/codegen_oracle.py`` (its docstring says how to re-run it). Here the same weights
are loaded into our model with the same ``code_image_size`` and our generator is run with the
same settings: greedy and beam 5, ``min_len = max_len_b = number of codes``, ``max_len_a = 0``.
Checked: identical ids for the winner and for every hypothesis of the n-best, final scores
within 1e-4, positional scores within 1e-4 plus two fp32 ulps of the running sum: both
generators derive them as differences of fp32 cumulative scores, which reach about -1400 over
256 codes, where one ulp is 1.2e-4.

Runs single-threaded (restored afterwards): on a busy 2-core machine two OpenMP threads made
these small per-step kernels up to 9x slower. The ofa-base case (its weights alone take about
13 s to synthesize) and the 256-code beam search are marked slow.
"""

import json
from pathlib import Path

import pytest
import torch

from ofa.checkpoints import Checkpoint, infer_config, model_from_checkpoint, to_official_keys
from ofa.generate import GenerationConfig, generate

TOL = 1e-4
FIXTURES = Path(__file__).parent / "fixtures" / "codegen"
SLOW_CONFIGS = {"ofa-base"}
SLOW_RUNS = {("tiny_grid16", "beam5")}
FP32_EPS = torch.finfo(torch.float32).eps


def _fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def _params():
    out = []
    for path in sorted(FIXTURES.glob("*.json")):
        spec = json.loads(path.read_text())
        for run in spec["generation"]:
            slow = spec["config"] in SLOW_CONFIGS or (path.stem, run) in SLOW_RUNS
            out.append(pytest.param(path.stem, run, marks=[pytest.mark.slow] if slow else [],
                                    id=f"{path.stem}-{run}"))
    return out


def config_for(settings: dict) -> GenerationConfig:
    """Our GenerationConfig for ModelScope ``SequenceGenerator(**settings)`` in code mode."""
    start, end = (int(x) for x in settings["constraint_range"].split(","))
    beam = settings["beam_size"]
    return GenerationConfig(
        beam_size=beam, nbest=beam, max_len_a=float(settings["max_len_a"]),
        max_len_b=settings["max_len_b"], min_len=settings["min_len"],
        no_repeat_ngram_size=settings["no_repeat_ngram_size"], lenpen=settings["len_penalty"],
        normalize_scores=settings["normalize_scores"], gen_code=settings["gen_code"],
        constraint_range=(start, end))


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def get_model(synth_state):
    """``get_model(config, code_image_size)``: an OFAModel on the oracle's weights (cached)."""
    models: dict = {}

    def get(config: str, code_image_size: int):
        key = (config, code_image_size)
        if key not in models:
            if models and next(iter(models))[0] != config:
                models.clear()  # one size in memory at a time
            state, _ = to_official_keys(synth_state(config))
            cfg = infer_config(state, code_image_size=code_image_size)
            ckpt = Checkpoint(cfg, state, "mmpretrain", Path("synth"))
            models[key] = model_from_checkpoint(ckpt).eval()
        return models[key]

    return get


@pytest.fixture(scope="module")
def encode():
    """Encoder output of a case's prompts (no image), shared by its runs."""
    cache: dict = {}

    def run(model, input_ids):
        key = (id(model), tuple(map(tuple, input_ids.tolist())))
        if key not in cache:
            with torch.no_grad():
                cache[key] = model.encode(input_ids, None)
        return cache[key]

    return run


def compare(hyps, ref: dict) -> dict:
    """ids / n-best equality, the max |final score diff| and the largest positional-score
    diff relative to its tolerance (1e-4 + two fp32 ulps of the running sum)."""
    score_diff, pos_diff, pos_ratio, nbest_equal = 0.0, 0.0, 0.0, True
    for ours, nbest in zip(hyps, ref["nbest"], strict=True):
        nbest_equal &= [h.tokens.tolist() for h in ours] == [x["ids"] for x in nbest]
        for h, x in zip(ours, nbest, strict=False):
            score_diff = max(score_diff, abs(h.score - x["score"]))
            expected = torch.tensor(x["positional_scores"])
            if h.positional_scores.shape == expected.shape:
                d = float((h.positional_scores - expected).abs().max())
                tol = TOL + 2 * FP32_EPS * float(expected.double().cumsum(0).abs().max())
                pos_diff, pos_ratio = max(pos_diff, d), max(pos_ratio, d / tol)
            else:
                pos_ratio = float("inf")
    return {"ids_equal": [h[0].tokens.tolist() for h in hyps] == ref["ids"],
            "nbest_equal": nbest_equal, "score_diff": score_diff,
            "positional_diff": pos_diff, "positional_ratio": pos_ratio}


@pytest.mark.parametrize(("case", "run"), _params())
def test_code_generation_matches_official(case, run, oracle_dir, get_model, encode,
                                          record_property):
    spec = _fixture(case)
    ref = spec["generation"][run]
    model = get_model(spec["config"], spec["code_image_size"])
    grid = model.config.code_image_size // 8
    assert [grid, grid] == spec["code_grid"]
    # our decoder's image position ids for BOS + the code grid equal ModelScope's
    n = spec["num_codes"]
    head = spec["reference"]["image_position_idx_head"]
    assert model.decoder.image_position_idx[:n + 1].tolist() == head[:n + 1]
    input_ids = torch.tensor(spec["inputs"]["prompt_ids"])
    enc = encode(model, input_ids)
    hyps = generate(model, input_ids, config=config_for(ref["settings"]), encoder_out=enc)
    r = compare(hyps, ref)
    print(f"\n{case}/{run}: ids_equal {r['ids_equal']} nbest_equal {r['nbest_equal']} "
          f"score diff {r['score_diff']:.2e} positional diff {r['positional_diff']:.2e}")
    record_property(f"{case}.{run}.score_diff", r["score_diff"])
    record_property(f"{case}.{run}.positional_diff", r["positional_diff"])
    for ours in hyps:
        for h in ours:
            assert h.tokens.shape[0] == n + 1 and int(h.tokens[-1]) == 2
    assert r["ids_equal"], f"{case}/{run}: ids differ from the official generator"
    assert r["nbest_equal"], f"{case}/{run}: n-best list differs from the official generator"
    assert r["score_diff"] <= TOL, f"{case}/{run}: score diff {r['score_diff']:.2e}"
    assert r["positional_ratio"] <= 1.0, (
        f"{case}/{run}: positional score diff {r['positional_diff']:.2e} over tolerance")


def test_code_mode_changes_the_result(oracle_dir, get_model, encode):
    """The fixture tells code mode from text mode: decoding the same steps with text
    positions and the text LayerNorm (code_mask False) gives other ids."""
    spec = _fixture("tiny_grid8")
    ref = spec["generation"]["greedy"]
    model = get_model(spec["config"], spec["code_image_size"])
    input_ids = torch.tensor(spec["inputs"]["prompt_ids"])
    enc = encode(model, input_ids)
    cfg = config_for(ref["settings"])
    hyps = generate(model, input_ids, config=cfg, encoder_out=enc,
                    code_mask=torch.zeros(input_ids.shape[0], dtype=torch.bool))
    assert [h[0].tokens.tolist() for h in hyps] != ref["ids"]
