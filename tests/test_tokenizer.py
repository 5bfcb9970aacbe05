"""OFATokenizer: exact OFA ids, BART-file round trip, special/location tokens, decoding."""

import json
import random
from pathlib import Path

import pytest
import torch

from ofa.errors import InputError
from ofa.tokenizer import (
    BIN_OFFSET,
    BOS,
    CODE_OFFSET,
    EOS,
    MASK,
    PAD,
    UNK,
    VOCAB_SIZE,
    OFATokenizer,
    pad_batch,
)

# Ids verified against the GPT-2 BPE and the fairseq dict.txt that OFA ships.
WITH_BOS_EOS = [
    (" what does the image describe?", [0, 99, 473, 5, 2274, 6190, 116, 2]),
    ("what does the image describe?", [0, 12196, 473, 5, 2274, 6190, 116, 2]),
    (
        ' which region does the text " a man " describe?',
        [0, 61, 976, 473, 5, 2788, 22, 10, 313, 22, 6190, 116, 2],
    ),
    (
        " what is the complete image? caption: a dog",
        [0, 99, 16, 5, 1498, 2274, 116, 3747, 35, 10, 2335, 2],
    ),
    (" yes", [0, 4420, 2]),
    (" no", [0, 117, 2]),
]
WITHOUT_BOS_EOS = [
    (" what color is the car? object: car road", [99, 3195, 16, 5, 512, 116, 7626, 35, 512, 921]),
    ("  what does the region describe? region:", [1437, 99, 473, 5, 976, 6190, 116, 976, 35]),
]

ROUND_TRIP = [
    " what does the image describe?",
    "what does the image describe?",
    "  two leading spaces",
    "trailing space ",
    "tabs\tand\nnewlines\r\n",
    "Ünïcödé façade — naïve café",
    "日本語のテキスト",
    "emoji 😀👍🏽 and flags 🇫🇷",
    "math ∑ x² ≤ ∞",
    "",
    " ",
    "it's 3.14 o'clock, isn't it?!",
    "<notatoken> <bin_1000> <code_8192> <BIN_1>",
    " region: <bin_12> <bin_40> <bin_300> <bin_400>",
    "<bin_0> <bin_999> dog",
    " a <mask> b <code_5>",
    "madeupword0000",
]


@pytest.fixture(scope="module")
def tok(bpe_dir: Path) -> OFATokenizer:
    return OFATokenizer.from_official(
        bpe_dir / "encoder.json", bpe_dir / "vocab.bpe", bpe_dir / "dict.txt"
    )


@pytest.fixture(scope="module")
def saved_dir(tok: OFATokenizer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tok")
    paths = tok.save(folder)
    assert sorted(p.name for p in paths) == ["merges.txt", "vocab.json"]
    return folder


@pytest.fixture(scope="module")
def bart_tok(saved_dir: Path) -> OFATokenizer:
    return OFATokenizer.from_bart(saved_dir / "vocab.json", saved_dir / "merges.txt")


@pytest.mark.parametrize(("text", "ids"), WITH_BOS_EOS)
def test_known_ids_with_bos_eos(tok: OFATokenizer, text: str, ids: list[int]) -> None:
    assert tok.encode(text) == ids


@pytest.mark.parametrize(("text", "ids"), WITHOUT_BOS_EOS)
def test_known_ids_without_bos_eos(tok: OFATokenizer, text: str, ids: list[int]) -> None:
    assert tok.encode(text, add_bos_eos=False) == ids


def test_oracle_prompt_ids(tok: OFATokenizer, shared_dir: Path) -> None:
    cases = sorted((shared_dir / "oracle" / "cases").glob("*.json"))
    checked = 0
    for case in cases:
        inputs = json.loads(case.read_text()).get("inputs") or {}
        if not inputs.get("prompt_texts"):
            continue
        ids = tok.encode_batch(inputs["prompt_texts"])
        width = len(inputs["prompt_ids"][0])
        assert pad_batch(ids, pad_to=width).tolist() == inputs["prompt_ids"], case.name
        checked += 1
    if not checked:
        pytest.skip("no oracle cases with prompt_texts")


def test_layout(tok: OFATokenizer) -> None:
    assert len(tok) == VOCAB_SIZE == tok.vocab_size == 59457
    assert [tok.token_to_id(t) for t in ("<s>", "<pad>", "</s>", "<unk>", "<mask>")] == [
        BOS,
        PAD,
        EOS,
        UNK,
        MASK,
    ]
    assert tok.token_to_id("<code_0>") == CODE_OFFSET == 50265
    assert tok.token_to_id("<code_8191>") == 58456
    assert tok.token_to_id("<bin_0>") == BIN_OFFSET == 58457
    assert tok.token_to_id("<bin_999>") == 59456
    assert tok.token_to_id("madeupword0000") == 50261
    assert tok.token_to_id("madeupword0002") == 50263
    # dict.txt line 1 is GPT-2 id 13 ("."), line 2 is 262 ("Ġthe").
    assert tok.id_to_token(4) == "." and tok.id_to_token(5) == "Ġthe"
    assert tok.id_to_token(58469) == "<bin_12>" and tok.id_to_token(50270) == "<code_5>"
    with pytest.raises(InputError):
        tok.id_to_token(VOCAB_SIZE)


def test_location_and_special_tokens_in_text(tok: OFATokenizer) -> None:
    region = tok.encode(" region:", add_bos_eos=False)
    assert region == [976, 35]
    bins = [BIN_OFFSET + b for b in (12, 40, 300, 400)]
    assert tok.encode(" region: <bin_12> <bin_40> <bin_300> <bin_400>") == [0, *region, *bins, 2]
    # Whitespace before a location token is dropped (any amount, or none).
    assert tok.encode(" region:<bin_12>\t<bin_40>  <bin_300><bin_400>") == [0, *region, *bins, 2]
    # Text after a location token keeps its leading space (detection: bins + " label").
    assert tok.encode("<bin_1> <bin_2> dog", add_bos_eos=False) == [58458, 58459, 2335]
    codes = tok.encode("<code_0> <code_8191>", add_bos_eos=False)
    assert codes == [CODE_OFFSET, CODE_OFFSET + 8191]
    assert tok.encode("<s></s><pad><unk>", add_bos_eos=False) == [BOS, EOS, PAD, UNK]
    assert tok.encode(" a <mask> b", add_bos_eos=False) == [10, MASK, 741]
    # Out-of-range or malformed names are ordinary text.
    for text in ("<bin_1000>", "<code_8192>", "<bin_-1>", "<BIN_1>"):
        ids = tok.encode(text, add_bos_eos=False)
        assert len(ids) > 1 and max(ids) < MASK, text


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_round_trip(tok: OFATokenizer, text: str) -> None:
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.decode(torch.tensor(ids)) == text


def test_decode_special_handling(tok: OFATokenizer) -> None:
    ids = [BOS, 99, 473, EOS, PAD, PAD]
    assert tok.decode(ids) == " what does"
    assert tok.decode(ids, skip_special=False) == "<s> what does</s><pad><pad>"
    assert tok.decode([BOS, 976, 35, 58469, 58497, EOS]) == " region: <bin_12> <bin_40>"
    assert tok.decode([58458, 2335]) == "<bin_1> dog"
    assert tok.decode([UNK, 99]) == "<unk> what"
    assert tok.decode_batch(torch.tensor([[0, 4420, 2], [0, 117, 2]])) == [" yes", " no"]
    for bad in ([VOCAB_SIZE], [-1]):
        with pytest.raises(InputError):
            tok.decode(bad)
    with pytest.raises(InputError):
        tok.decode(torch.zeros(2, 2, dtype=torch.long))


def test_encode_batch_matches_encode(tok: OFATokenizer) -> None:
    texts = [t for t, _ in WITH_BOS_EOS] + ROUND_TRIP
    assert tok.encode_batch(texts) == [tok.encode(t) for t in texts]
    assert tok.encode_batch(texts, add_bos_eos=False) == [
        tok.encode(t, add_bos_eos=False) for t in texts
    ]


def test_repeated_encodes_are_independent_lists(tok: OFATokenizer) -> None:
    first = tok.encode(" what color is the circle?")
    first.append(-1)  # the caller owns the list: the cached ids must not change
    again = tok.encode(" what color is the circle?")
    assert again == first[:-1] and again is not first
    assert tok.encode(" what color is the circle?", add_bos_eos=False) == again[1:-1]


def test_bad_text_inputs(tok: OFATokenizer) -> None:
    with pytest.raises(InputError):
        tok.encode(None)  # type: ignore[arg-type]
    with pytest.raises(InputError):
        tok.encode_batch("a single string")
    with pytest.raises(InputError):
        tok.encode_batch(["ok", 3])  # type: ignore[list-item]


def _varied_strings(n: int) -> list[str]:
    rng = random.Random(1234)
    # "|"-separated so that words may hold spaces, tabs and newlines.
    words = (
        "the|a|dog|cat|region|describe|image|what|does|Hello|OFA|don't|we'll|I'm|x2|1999|3.14|"
        'e-mail|naïve|Zürich|東京|😀|🐕\u200d🦺|über|ß|ÆØÅ|<bin_7>|<code_42>|<mask>|</s>|!!|?|"|'
        "(paren)|#tag|@user|a/b|tab\t|\n|  |\u00a0|"
    ).split("|")
    seps = [" ", "", "  ", "\t", "\n", " , ", "."]
    out = []
    for _ in range(n):
        parts = [rng.choice(words) for _ in range(rng.randint(1, 12))]
        text = "".join(p + rng.choice(seps) for p in parts)
        if rng.random() < 0.5:
            text = " " + text
        out.append(text)
    # A few byte-level oddities: control chars, lone combining marks, every printable ASCII.
    out += ["\x00\x01\x7f", "e\u0301", "".join(chr(c) for c in range(32, 127)), "\ufeffbom"]
    return out


def test_bart_files_give_identical_ids(tok: OFATokenizer, bart_tok: OFATokenizer) -> None:
    texts = _varied_strings(400)
    a, b = tok.encode_batch(texts), bart_tok.encode_batch(texts)
    assert a == b
    assert all(tok.decode(ids) == bart_tok.decode(ids) for ids in a[:50])
    # Plain text (no special-token names) always decodes back to itself.
    plain = [(t, ids) for t, ids in zip(texts, a, strict=True) if "<" not in t]
    assert len(plain) > 50 and all(tok.decode(ids) == t for t, ids in plain)
    # Sanity: the generated strings exercise location tokens and plain text alike.
    flat = [i for ids in a for i in ids]
    assert any(i >= BIN_OFFSET for i in flat) and any(4 <= i < MASK for i in flat)


def test_from_dir_detects_both_layouts(tok: OFATokenizer, bpe_dir: Path, saved_dir: Path) -> None:
    text = ' which region does the text " a man " describe?'
    assert OFATokenizer.from_dir(bpe_dir).encode(text) == tok.encode(text)
    assert OFATokenizer.from_dir(saved_dir).encode(text) == tok.encode(text)


def test_from_dir_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="vocab.json.*encoder.json"):
        OFATokenizer.from_dir(tmp_path)
    with pytest.raises(InputError, match="not found"):
        OFATokenizer.from_dir(tmp_path / "missing")


def test_from_bart_validation(saved_dir: Path, tmp_path: Path) -> None:
    vocab = json.loads((saved_dir / "vocab.json").read_text(encoding="utf-8"))
    merges = saved_dir / "merges.txt"

    # An export that already lists <code_k>/<bin_b> at OFA's ids is accepted.
    full = dict(vocab, **{"<code_0>": CODE_OFFSET, "<bin_999>": 59456})
    (tmp_path / "full.json").write_text(json.dumps(full), encoding="utf-8")
    assert OFATokenizer.from_bart(tmp_path / "full.json", merges).encode(" yes") == [0, 4420, 2]

    bad_vocabs = {
        "no_mask": {k: v for k, v in vocab.items() if k != "<mask>"},
        "swapped": dict(vocab, **{"<s>": 2, "</s>": 0}),
        "extra": dict(vocab, **{"<bin_0>": 50265}),
    }
    for name, bad in bad_vocabs.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(bad), encoding="utf-8")
        with pytest.raises(InputError, match=name):
            OFATokenizer.from_bart(path, merges)
    (tmp_path / "broken.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(InputError, match="JSON"):
        OFATokenizer.from_bart(tmp_path / "broken.json", merges)
    (tmp_path / "merges_bad.txt").write_text("#version: 0.2\na b c\n", encoding="utf-8")
    with pytest.raises(InputError, match="line 2"):
        OFATokenizer.from_bart(saved_dir / "vocab.json", tmp_path / "merges_bad.txt")
    with pytest.raises(InputError, match="not found"):
        OFATokenizer.from_bart(tmp_path / "nope.json", merges)


def test_pad_batch() -> None:
    out = pad_batch([[0, 5, 2], [0, 2]])
    assert out.dtype == torch.long
    assert out.tolist() == [[0, 5, 2], [0, 2, PAD]]
    assert pad_batch([[0, 2]], pad_to=4).tolist() == [[0, 2, PAD, PAD]]
    with pytest.raises(InputError):
        pad_batch([[0, 5, 2]], pad_to=2)
    with pytest.raises(InputError):
        pad_batch([])
