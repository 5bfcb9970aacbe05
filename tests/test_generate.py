"""Generation mechanics on a tiny random model (fast): beam bookkeeping, batching, lengths,
n-gram blocking, tries, id ranges, sampling, candidate scoring, argument checks.

Parity with the official generator on synthesized ofa-base/tiny weights is in
``test_generate_parity.py``.
"""

import math

import pytest
import torch

from ofa.errors import InputError
from ofa.generate import (
    GenerationConfig,
    Hypothesis,
    SequenceGenerator,
    Trie,
    _block_repeated_ngrams,
    encode_answers,
    generate,
    score_candidates,
)
from ofa.model import OFAModel

from conftest import tiny_config

BOS, PAD, EOS, UNK = 0, 1, 2, 3
PROMPTS = torch.tensor([[0, 99, 473, 5, 2274, 6190, 116, 2],
                        [0, 16, 24, 5419, 116, 2, 1, 1],
                        [0, 141, 171, 82, 32, 2934, 2, 1]])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model's ops are too small to gain from threads, and with other processes on
    the CPUs torch's thread pool can make them 10x slower; restore the setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model() -> OFAModel:
    """Random tiny OFA with sharper weights than the default init, so that outputs depend on
    the input, repeat tokens (n-gram blocking has work to do) and some beams end early."""
    torch.manual_seed(0)
    m = OFAModel(tiny_config()).eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("embed_tokens.weight"):
                p.normal_(0, 0.3)
                p[PAD] = 0
                p[EOS] *= 3
            elif p.dim() == 2 and "embed" not in name and "rel_pos" not in name:
                p.normal_(0, 0.15)
    return m


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def teacher_forced_lprobs(model, input_ids, images, hyp: Hypothesis, row: int = 0,
                          mask=None) -> torch.Tensor:
    """log_softmax of the logits that predicted each hypothesis token [T, V]."""
    dec_in = torch.cat([torch.tensor([BOS]), hyp.tokens[:-1]]).unsqueeze(0)
    img = images[row:row + 1] if images is not None else None
    with torch.no_grad():
        logits = model(input_ids[row:row + 1], dec_in, img)[0].float()
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    return torch.log_softmax(logits, -1)


def assert_same_hyps(a: list[Hypothesis], b: list[Hypothesis], atol: float = 1e-4) -> None:
    assert [h.tokens.tolist() for h in a] == [h.tokens.tolist() for h in b]
    for x, y in zip(a, b, strict=True):
        assert x.score == pytest.approx(y.score, abs=atol)
        torch.testing.assert_close(x.positional_scores, y.positional_scores, atol=atol, rtol=0)


# ---------------------------------------------------------------- config and trie
@pytest.mark.parametrize("kwargs", [
    dict(beam_size=0), dict(max_len_b=-1), dict(min_len=-1), dict(no_repeat_ngram_size=-2),
    dict(temperature=0.0), dict(top_p=1.5), dict(top_k=-1), dict(top_k=5),  # top_k w/o sampling
    dict(nbest=6), dict(constraint_range=(10, 5)), dict(constraint_range=(2, 100)),
    dict(constraint_range="a,b"), dict(lenpen=float("nan")), dict(beam_size=2.5),
    dict(seed="x", sampling=True),
])
def test_config_rejects_bad_values(kwargs):
    with pytest.raises(InputError):
        GenerationConfig(**kwargs)


def test_config_parses_official_range_string():
    assert GenerationConfig(constraint_range="58457,59457").constraint_range == (58457, 59457)
    cfg = GenerationConfig().replace(beam_size=2, nbest=2)
    assert (cfg.beam_size, cfg.nbest) == (2, 2)
    with pytest.raises(InputError):
        GenerationConfig().replace(nbest=9)


def test_trie_allowed_and_fall_off():
    trie = Trie([[0, 10, 11, 2], [0, 10, 12, 13, 2], [0, 20, 2]])
    assert len(trie) == 3
    assert trie.allowed([]) == [0]
    assert sorted(trie.allowed([0])) == [10, 20]
    assert sorted(trie.allowed([0, 10])) == [11, 12]
    assert trie.allowed([0, 10, 12, 13]) == [2]
    assert trie.allowed([0, 99]) == [EOS]  # off the trie: only EOS
    assert trie.allowed([0, 20, 2]) == [EOS]  # past a leaf


def test_trie_from_answers_uses_official_encoding(bpe_dir):
    from ofa.tokenizer import OFATokenizer

    tok = OFATokenizer.from_dir(bpe_dir)
    assert encode_answers(tok, ["yes", "no"]) == [[4420], [117]]
    trie = Trie.from_answers(tok, ["yes", "no"])
    assert sorted(trie.allowed([0])) == [117, 4420]
    assert trie.allowed([0, 4420]) == [EOS]
    with pytest.raises(InputError):
        encode_answers(tok, [""])


# ---------------------------------------------------------------- beam search mechanics
def test_scores_match_teacher_forcing_and_nbest_sorted(model, images):
    """Positional scores are the model's own log-probs (KV cache and beam reordering are
    right), the score is their length-normalised sum, n-best is sorted."""
    cfg = GenerationConfig(beam_size=4, max_len_b=10, nbest=4, lenpen=0.7)
    out = generate(model, PROMPTS[:1], images[:1], config=cfg)[0]
    assert len(out) == 4
    assert [h.score for h in out] == sorted((h.score for h in out), reverse=True)
    for h in out:
        assert h.tokens[-1] == EOS and BOS not in h.tokens.tolist()
        lp = teacher_forced_lprobs(model, PROMPTS, images, h)
        expected = lp.gather(1, h.tokens.unsqueeze(1)).squeeze(1)
        torch.testing.assert_close(h.positional_scores, expected, atol=1e-4, rtol=0)
        assert h.score == pytest.approx(float(h.positional_scores.sum()) / len(h.tokens) ** 0.7,
                                        abs=1e-5)


def test_unnormalized_score_is_plain_sum(model):
    cfg = GenerationConfig(beam_size=2, max_len_b=6, normalize_scores=False)
    h = generate(model, PROMPTS[:1], config=cfg)[0][0]
    assert h.score == pytest.approx(float(h.positional_scores.sum()), abs=1e-5)


@pytest.mark.parametrize("settings,use_images", [
    (dict(beam_size=3, max_len_b=12, nbest=3, no_repeat_ngram_size=3), False),
    (dict(beam_size=3, max_len_b=12, nbest=3, no_repeat_ngram_size=3), True),
    (dict(beam_size=2, max_len_a=1.0, max_len_b=1, nbest=2), True),  # per-item max_len
    (dict(beam_size=1, max_len_b=8), True),
])
def test_batch_equals_items_alone(model, images, settings, use_images):
    cfg = GenerationConfig(**settings)
    imgs = images if use_images else None
    batch = generate(model, PROMPTS, imgs, config=cfg)
    for i in range(3):
        n = int(PROMPTS[i].ne(PAD).sum())
        alone = generate(model, PROMPTS[i:i + 1, :n], imgs[i:i + 1] if use_images else None,
                         config=cfg)[0]
        assert_same_hyps(batch[i], alone)
    if not use_images:  # item 0 finishes long before the others and leaves the batch
        assert max(len(h.tokens) for h in batch[0]) < 13 == len(batch[1][0].tokens)


def test_batch_equals_alone_with_prefix_and_trie(model, images):
    answers = [[0, 10, 11, 2], [0, 10, 12, 13, 2], [0, 20, 2], [0, 30, 31, 32, 2]]
    trie = Trie(answers)
    prefix = torch.tensor([[99, 473, 5], [16, 1, 1], [141, 171, 1]])
    cfg = GenerationConfig(beam_size=3, nbest=3, normalize_scores=False)
    batch = generate(model, PROMPTS, images, config=cfg, prefix_tokens=prefix, trie=trie)
    for i in range(3):
        p = prefix[i][prefix[i].ne(PAD)]
        alone = generate(model, PROMPTS[i:i + 1], images[i:i + 1], config=cfg,
                         prefix_tokens=p.unsqueeze(0), trie=trie)[0]
        assert_same_hyps(batch[i], alone)
        for h in batch[i]:
            assert h.tokens[:len(p)].tolist() == p.tolist()  # prefix kept in the output
            assert [BOS, *h.tokens[len(p):].tolist()] in answers  # the trie after the prefix


def test_min_and_max_len(model):
    ids = PROMPTS[:1]
    exact = generate(model, ids, config=GenerationConfig(beam_size=3, nbest=3, min_len=4,
                                                         max_len_b=4))[0]
    assert all(len(h.tokens) == 5 for h in exact)  # 4 tokens + forced EOS
    assert all(EOS not in h.tokens[:-1].tolist() for h in exact)
    # the forced EOS keeps its real (low) log-prob, as in fairseq
    assert all(h.positional_scores[-1] < 0 for h in exact)
    short = generate(model, ids, config=GenerationConfig(beam_size=3, nbest=3, max_len_b=2))[0]
    assert all(len(h.tokens) <= 3 for h in short)
    longer = generate(model, ids, config=GenerationConfig(beam_size=3, nbest=3, min_len=6,
                                                          max_len_b=9))[0]
    assert all(len(h.tokens) >= 7 for h in longer)
    # max_len_a counts the source's non-pad tokens: 8 * 0.5 + 1 = 5
    a = generate(model, PROMPTS[:1], config=GenerationConfig(beam_size=1, min_len=5,
                                                             max_len_a=0.5, max_len_b=1))
    assert len(a[0][0].tokens) == 6
    with pytest.raises(InputError):
        generate(model, ids, config=GenerationConfig(min_len=5, max_len_b=3))


def test_no_repeat_ngram_blocks(model):
    def ngrams(seq, n):
        return [tuple(seq[i:i + n]) for i in range(len(seq) - n + 1)]

    ids = PROMPTS
    free = generate(model, ids, config=GenerationConfig(beam_size=3, nbest=3, max_len_b=12))
    repeats = sum(len(set(ngrams([BOS, *h.tokens.tolist()], 2)))
                  < len(ngrams([BOS, *h.tokens.tolist()], 2)) for o in free for h in o)
    assert repeats > 0  # this model does repeat itself
    for n in (1, 2, 3):
        cfg = GenerationConfig(beam_size=3, nbest=3, max_len_b=12, no_repeat_ngram_size=n)
        for o in generate(model, ids, config=cfg):
            for h in o:
                grams = ngrams([BOS, *h.tokens.tolist()], n)
                assert len(set(grams)) == len(grams), (n, h.tokens.tolist())


def test_block_repeated_ngrams_unit():
    lp = torch.zeros(2, 10)
    hist = torch.tensor([[0, 5, 6, 5], [0, 7, 8, 9]])
    _block_repeated_ngrams(lp, hist, 2)  # last token 5 was followed by 6 before
    assert lp[0].isinf().nonzero().squeeze(1).tolist() == [6]
    assert not lp[1].isinf().any()
    lp = torch.zeros(1, 10)
    _block_repeated_ngrams(lp, torch.tensor([[0, 4, 4]]), 1)
    assert lp[0].isinf().nonzero().squeeze(1).tolist() == [0, 4]


def test_trie_restricts_outputs(model):
    answers = [[0, 10, 11, 2], [0, 10, 12, 13, 2], [0, 20, 2]]
    trie = Trie(answers)
    cfg = GenerationConfig(beam_size=5, nbest=3, normalize_scores=False)
    out = generate(model, PROMPTS, config=cfg, trie=trie)
    for o in out:
        # 3 answers < 5 beams: every answer finishes, then the dead beams stop the search
        assert sorted(h.tokens.tolist() for h in o) == sorted(a[1:] for a in answers)
        assert [h.score for h in o] == sorted((h.score for h in o), reverse=True)
    # trie applied before log_softmax: probabilities renormalise over the allowed tokens
    h = out[0][0]
    mask = torch.zeros(len(h.tokens), model.config.vocab_size, dtype=torch.bool)
    for j in range(len(h.tokens)):
        mask[j, trie.allowed([BOS, *h.tokens[:j].tolist()])] = True
    lp = teacher_forced_lprobs(model, PROMPTS, None, h, mask=mask)
    torch.testing.assert_close(h.positional_scores,
                               lp.gather(1, h.tokens.unsqueeze(1)).squeeze(1), atol=1e-4, rtol=0)


def test_constraint_range_and_zero_shot(model):
    start, end = 58457, 59457
    base = dict(beam_size=1, min_len=4, max_len_b=4, constraint_range=(start, end))
    fine = generate(model, PROMPTS, config=GenerationConfig(**base))
    zs = generate(model, PROMPTS, config=GenerationConfig(**base, zero_shot=True))
    for f, z in zip(fine, zs, strict=True):
        toks = f[0].tokens[:-1]
        assert bool(((toks >= start) & (toks < end) | (toks == BOS) | (toks == UNK)).all())
        assert f[0].tokens.tolist() == z[0].tokens.tolist()  # same argmax either way
        # before log_softmax renormalises, after does not: fine-tuned scores are higher
        assert bool((f[0].positional_scores[:-1] > z[0].positional_scores[:-1]).all())
    # ids 0-3 stay allowed: a huge UNK bonus wins even inside the range constraint
    cfg = GenerationConfig(**base, unk_penalty=-1000.0)
    assert generate(model, PROMPTS[:1], config=cfg)[0][0].tokens.tolist() == [UNK] * 4 + [EOS]
    # strict_range blocks them: only in-range ids, then the final EOS
    strict = generate(model, PROMPTS[:1], config=cfg.replace(strict_range=True))[0][0].tokens
    assert bool(((strict[:-1] >= start) & (strict[:-1] < end)).all()) and strict[-1] == EOS


def test_unk_penalty(model):
    cfg = GenerationConfig(beam_size=2, max_len_b=3, min_len=3, unk_penalty=-1000.0)
    assert generate(model, PROMPTS[:1], config=cfg)[0][0].tokens.tolist() == [UNK] * 3 + [EOS]


def test_sequence_generator_and_encoder_out(model, images):
    cfg = GenerationConfig(beam_size=2, max_len_b=5)
    gen = SequenceGenerator(cfg)
    enc = model.encode(PROMPTS, images)
    a = gen(model, PROMPTS, images)
    b = gen.generate(model, PROMPTS, encoder_out=enc)
    for x, y in zip(a, b, strict=True):
        assert_same_hyps(x, y)


def test_bad_inputs(model):
    with pytest.raises(InputError):
        generate(model, PROMPTS[0])  # 1-D
    with pytest.raises(InputError):
        generate(model, PROMPTS[:1], prefix_tokens=torch.tensor([[5, 2]]))  # EOS in prefix
    with pytest.raises(InputError):
        generate(model, PROMPTS[:1], prefix_tokens=torch.tensor([[1, 5]]))  # left padding
    with pytest.raises(InputError):
        generate(model, PROMPTS[:2], prefix_tokens=torch.tensor([[5]]))  # wrong batch
    with pytest.raises(InputError):
        generate(model, PROMPTS, encoder_out=model.encode(PROMPTS[:1]))


# ---------------------------------------------------------------- sampling
def test_sampling_is_deterministic_with_a_seed(model):
    cfg = GenerationConfig(sampling=True, beam_size=4, nbest=4, max_len_b=8, temperature=1.5,
                           seed=123)
    a = generate(model, PROMPTS, config=cfg)
    b = generate(model, PROMPTS, config=cfg)
    c = generate(model, PROMPTS, config=cfg.replace(seed=None),
                 generator=torch.Generator().manual_seed(123))
    for x, y, z in zip(a, b, c, strict=True):
        assert_same_hyps(x, y, atol=0)
        assert_same_hyps(x, z, atol=0)
        assert [h.score for h in x] == sorted((h.score for h in x), reverse=True)
    others = [generate(model, PROMPTS, config=cfg.replace(seed=s)) for s in (1, 2, 3)]
    flat = [[h.tokens.tolist() for o in run for h in o] for run in [a, *others]]
    assert any(f != flat[0] for f in flat[1:])


def test_one_draw_per_row_over_the_whole_vocabulary_follows_the_probabilities(model):
    # later sampling steps draw one token per row (the first of two draws, on the CPU)
    from ofa.generate import _Search

    search = _Search(model, GenerationConfig(sampling=True, beam_size=4), None)
    search.generator = torch.Generator().manual_seed(0)
    rows, vocab = 20000, 2000
    lprobs = torch.full((rows, vocab), float("-inf"))
    lprobs[:, [3, 1500, 1999]] = torch.tensor([0.5, 0.3, 0.2]).log()
    scores, tokens, beams = search._sample(lprobs, torch.zeros(rows, 0), r=4)
    assert tokens.shape == (rows // 4, 4) and beams.tolist()[0] == [0, 1, 2, 3]
    drawn = tokens.flatten()
    assert set(drawn.tolist()) == {3, 1500, 1999}  # never a token of probability 0
    share = torch.stack([drawn.eq(t).float().mean() for t in (3, 1500, 1999)])
    torch.testing.assert_close(share, torch.tensor([0.5, 0.3, 0.2]), atol=0.015, rtol=0)
    torch.testing.assert_close(scores.flatten(), lprobs.gather(1, drawn[:, None]).flatten())


def test_sampling_top_k_one_is_greedy(model):
    greedy = generate(model, PROMPTS, config=GenerationConfig(beam_size=1, max_len_b=8))
    top1 = generate(model, PROMPTS, config=GenerationConfig(beam_size=1, max_len_b=8,
                                                            sampling=True, top_k=1, seed=0))
    for g, s in zip(greedy, top1, strict=True):
        assert_same_hyps(g, s)


@pytest.mark.parametrize("kind", ["top_k", "top_p"])
def test_sampling_restriction(model, kind):
    max_len = 6
    extra = dict(top_k=3) if kind == "top_k" else dict(top_p=0.6)
    cfg = GenerationConfig(sampling=True, beam_size=6, nbest=6, max_len_b=max_len, min_len=0,
                           temperature=2.0, seed=7, **extra)
    out = generate(model, PROMPTS[:1], config=cfg)[0]
    assert len(out) == 6
    for h in out:
        with torch.no_grad():
            dec_in = torch.cat([torch.tensor([BOS]), h.tokens[:-1]]).unsqueeze(0)
            logits = model(PROMPTS[:1], dec_in)[0].float() / 2.0
        lp = torch.log_softmax(logits, -1)
        lp[:, PAD] = float("-inf")
        torch.testing.assert_close(h.positional_scores,
                                   lp.gather(1, h.tokens.unsqueeze(1)).squeeze(1),
                                   atol=1e-4, rtol=0)
        for j, t in enumerate(h.tokens.tolist()):
            if j >= max_len:  # forced EOS
                continue
            better = lp[j] > lp[j, t]
            if kind == "top_k":
                assert int(better.sum()) < 3
            else:
                assert float(lp[j][better].exp().sum()) < 0.6 + 1e-5


def test_sampling_image_codes(model):
    start, end = 50265, 58457
    cfg = GenerationConfig(sampling=True, beam_size=2, nbest=2, min_len=5, max_len_b=5,
                           gen_code=True, constraint_range=(start, end), top_k=50, seed=0)
    for h in generate(model, PROMPTS[:2], config=cfg)[0]:
        toks = h.tokens[:-1]
        assert bool(((toks >= start) & (toks < end)).all()) and h.tokens[-1] == EOS


@pytest.mark.parametrize(("settings", "narrows"), [
    (dict(sampling=True, beam_size=3, nbest=3, top_k=20, seed=3, gen_code=True), True),
    (dict(sampling=True, beam_size=2, nbest=2, top_k=30, top_p=0.8, seed=4,
          strict_range=True), True),
    (dict(beam_size=3, nbest=3, gen_code=True), True),
    (dict(beam_size=2, nbest=2, unk_penalty=-1000.0), True),
    (dict(beam_size=2, nbest=2, min_len=6, max_len_b=6, strict_range=True), True),
    # a draw among all the allowed ids reads one random number per candidate: these keep
    # the whole vocabulary, so that a seed gives the samples it gave before
    (dict(sampling=True, beam_size=2, nbest=2, top_p=0.8, temperature=1.5, seed=5), False),
    (dict(sampling=True, beam_size=2, nbest=2, top_k=500, seed=5), False),
    (dict(beam_size=2, nbest=2, no_repeat_ngram_size=2), False),
], ids=["codes-top-k", "strict-top-k-top-p", "codes-beam", "unk-bonus", "strict-beam",
        "top-p", "top-k-past-the-range", "ngram"])
def test_search_over_the_allowed_columns_equals_the_whole_vocabulary(model, monkeypatch,
                                                                     settings, narrows):
    # under constraint_range the search runs over the allowed ids' columns only where that
    # changes nothing; forcing it over the whole vocabulary (the other ids at -inf) gives the
    # same samples and beams
    from ofa.generate import _Search

    base = dict(min_len=4, max_len_b=8, constraint_range=(50265, 50365))  # 104 allowed ids
    cfg = GenerationConfig(**{**base, **settings})
    decided = []
    real = _Search._narrow_search
    monkeypatch.setattr(_Search, "_narrow_search",
                        lambda self, n: decided.append(real(self, n)) or decided[-1])
    narrow = generate(model, PROMPTS, config=cfg)
    assert decided == [narrows]
    monkeypatch.setattr(_Search, "_narrow_search", lambda self, n: False)
    whole = generate(model, PROMPTS, config=cfg)
    for a, b in zip(narrow, whole, strict=True):
        assert_same_hyps(a, b, atol=1e-5)
    for hyps in narrow:
        for h in hyps:
            toks = h.tokens[:-1]
            inside = (toks >= 50265) & (toks < 50365)
            if settings.get("strict_range"):
                assert bool(inside.all())
            assert bool((inside | (toks == BOS) | (toks == UNK)).all())
    if "unk_penalty" in settings:  # the special ids keep their columns: UNK's bonus wins
        assert narrow[0][0].tokens.tolist()[:4] == [UNK] * 4


def test_a_full_code_grid_decodes_past_the_text_positions():
    # OFA decodes all 1024 codes (+ EOS) of a 32 x 32 grid with max_target_positions 1024:
    # code samples are limited by their own position ids, text by the text table
    torch.manual_seed(0)
    m = OFAModel(tiny_config(code_image_size=64, max_target_positions=32)).eval()
    assert m.decoder.max_positions(code=True) > 64 + 1 > m.decoder.max_positions()
    cfg = GenerationConfig(sampling=True, beam_size=2, nbest=2, min_len=64, max_len_a=0,
                           max_len_b=64, gen_code=True, constraint_range=(50265, 58457),
                           top_k=50, seed=0)
    for h in generate(m, PROMPTS[:1], config=cfg)[0]:
        assert h.tokens.shape == (65,) and h.tokens[-1] == EOS
    with pytest.raises(InputError, match="min_len=64 exceeds max_len=31"):
        generate(m, PROMPTS[:1], config=GenerationConfig(min_len=64, max_len_a=0,
                                                         max_len_b=64))


# ---------------------------------------------------------------- candidate scoring
def test_score_candidates_matches_manual_and_chunking(model, images):
    trie = Trie([[0, 10, 11, 2], [0, 10, 12, 13, 2], [0, 20, 2]])
    answers = [[10, 11], [10, 12, 13], [20]]
    prompts = [[0, 99, 473, 5], [0, 16]]
    enc = model.encode(PROMPTS[:2], images[:2])
    got = score_candidates(model, enc, prompts, answers, trie=trie)
    assert got.shape == (2, 3)
    torch.testing.assert_close(
        got, score_candidates(model, enc, prompts, answers, trie=trie, chunk_size=2))
    padded = torch.tensor([[0, 99, 473, 5], [0, 16, 1, 1]])
    torch.testing.assert_close(got, score_candidates(model, enc, padded, answers, trie=trie))
    for i, p in enumerate(prompts):
        for j, a in enumerate(answers):
            with torch.no_grad():
                logits = model(PROMPTS[i:i + 1], torch.tensor([p + a]), images[i:i + 1])[0]
            total = 0.0
            for k, tgt in enumerate([*a, EOS]):
                row = logits[len(p) - 1 + k].clone()
                mask = torch.zeros_like(row, dtype=torch.bool)
                mask[trie.allowed([BOS, *a[:k]])] = True
                total += float(torch.log_softmax(row.masked_fill(~mask, -math.inf), -1)[tgt])
            assert float(got[i, j]) == pytest.approx(total, abs=1e-4)
    # without a trie nothing is masked: scores are lower (no renormalisation)
    free = score_candidates(model, enc, prompts, answers)
    assert bool((free < got).all())
    with pytest.raises(InputError):
        score_candidates(model, enc, [[5, 6], [0]], answers)  # prompt without BOS
    with pytest.raises(InputError):
        score_candidates(model, enc, prompts, [[]])
