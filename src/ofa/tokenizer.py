"""OFA text tokenizer: GPT-2 byte-level BPE with OFA's fairseq id layout.

Id layout (fairseq ``Dictionary`` order, identical to BART's HF ``vocab.json`` plus OFA's extras):

* 0 ``<s>``, 1 ``<pad>``, 2 ``</s>``, 3 ``<unk>``
* 4 + i: the i-th line of ``dict.txt`` (a GPT-2 BPE id, mapped through ``encoder.json``)
* 50264 ``<mask>``
* 50265 + k: ``<code_k>`` (VQGAN image codes, k < 8192)
* 58457 + b: ``<bin_b>`` (location bins, b < 1000); 59457 ids in total

The BPE itself is the HuggingFace ``tokenizers`` implementation, so encoding is fast and exact.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

from ofa.errors import InputError

__all__ = [
    "BIN_OFFSET",
    "BOS",
    "CODE_OFFSET",
    "EOS",
    "MASK",
    "NUM_BINS",
    "NUM_CODES",
    "PAD",
    "TEXT_VOCAB_SIZE",
    "UNK",
    "VOCAB_SIZE",
    "OFATokenizer",
    "as_id_list",
    "pad_batch",
    "printable",
    "require_utf8",
]

BOS = 0
PAD = 1
EOS = 2
UNK = 3
MASK = 50264
TEXT_VOCAB_SIZE = 50265  # <s> <pad> </s> <unk> + 50260 dict.txt symbols + <mask>
CODE_OFFSET = 50265
NUM_CODES = 8192
BIN_OFFSET = 58457
NUM_BINS = 1000
VOCAB_SIZE = 59457
_ENCODE_CACHE_SIZE = 1 << 17  # texts whose ids a tokenizer keeps (cleared when full)

_SPECIALS = {"<s>": BOS, "<pad>": PAD, "</s>": EOS, "<unk>": UNK, "<mask>": MASK}
_NUM_DICT_SYMBOLS = TEXT_VOCAB_SIZE - 5

OFFICIAL_FILES = ("encoder.json", "vocab.bpe", "dict.txt")
BART_FILES = ("vocab.json", "merges.txt")

PathLike = str | os.PathLike[str]
IdSequence = Sequence[int] | torch.Tensor


def printable(text: str) -> str:
    """``text`` safe to print or write as UTF-8: bytes that were not valid UTF-8 (which Python
    keeps as lone surrogates, e.g. in ``sys.argv``) are shown as ``\\xff``, other lone
    surrogates as ``\\udXXX``; valid text is returned unchanged."""
    try:
        raw = text.encode("utf-8", "surrogateescape")  # undecodable bytes back to bytes
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def require_utf8(text: str, what: str = "text") -> str:
    """``text`` unchanged if it is valid Unicode (no lone surrogate), else one InputError
    naming ``what`` and the bad byte. Every text the model reads passes here
    (:meth:`OFATokenizer.encode`); the Python API (so the CLI and the server too) calls it
    first on each input field, so that its error names the field as the caller wrote it.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        bad = text[e.start]
        code = ord(bad)
        # 0xDC80..0xDCFF is how Python's surrogateescape keeps an undecodable byte
        shown = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else \
            f"lone surrogate U+{code:04X}"
        excerpt = printable(text)
        excerpt = excerpt if len(excerpt) <= 60 else excerpt[:57] + "..."
        raise InputError(f"{what} is not valid UTF-8 text ({shown} at character "
                         f"{e.start + 1} of '{excerpt}')") from None
    return text


def _read_text(path: PathLike) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"tokenizer file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read tokenizer file {path}: {e}") from None


def _read_json(path: PathLike) -> dict:
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise InputError(f"tokenizer file {path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise InputError(f"tokenizer file {path} must hold a JSON object (token -> id)")
    return data


def _parse_merges(text: str, path: PathLike) -> list[tuple[str, str]]:
    merges: list[tuple[str, str]] = []
    for n, line in enumerate(text.splitlines(), 1):
        # GPT-2's vocab.bpe and HF's merges.txt both start with a "#version" header.
        if not line or (n == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise InputError(f"{path}, line {n}: expected 'token token', got {line!r}")
        merges.append((parts[0], parts[1]))
    if not merges:
        raise InputError(f"{path} holds no BPE merges")
    return merges


class OFATokenizer:
    """Encode text to OFA ids and back. ``<code_k>``/``<bin_b>`` in text become single ids.

    No prefix space is added: OFA prompts carry their own leading space, which changes the first
    id (``" what"`` -> 99, ``"what"`` -> 12196). Whitespace directly before ``<code_k>``,
    ``<bin_b>`` and ``<mask>`` is dropped, so ``" region: <bin_1> <bin_2>"`` gives the ids of
    ``" region:"`` followed by the two bin ids, as fairseq's whitespace-split encoding does.
    """

    def __init__(self, text_vocab: dict[str, int], merges: list[tuple[str, str]]) -> None:
        """Build from the 50265-entry text vocabulary (token -> id) and the BPE merges."""
        self._vocab = _check_text_vocab(text_vocab)
        self._merges = list(merges)
        try:
            model = models.BPE(self._vocab, self._merges, unk_token="<unk>")
        except Exception as e:  # tokenizers raises plain Exception for bad merges
            raise InputError(f"inconsistent BPE vocabulary/merges: {e}") from None
        tok = Tokenizer(model)
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        # <s> <pad> </s> <unk> keep surrounding whitespace; <mask> eats the space before it
        # (BART's convention). They already have ids in the BPE vocab, so no new ids appear.
        tok.add_special_tokens(
            [AddedToken(t, special=True, lstrip=t == "<mask>", normalized=False) for t in _SPECIALS]
        )
        # Codes then bins receive ids in order after <mask>: 50265.., 58457.. (checked below).
        # lstrip=True drops the separating whitespace; whitespace after stays with the next
        # text piece because OFA text pieces start with a space (detection: bins + " label").
        extra = [f"<code_{k}>" for k in range(NUM_CODES)] + [f"<bin_{b}>" for b in range(NUM_BINS)]
        tok.add_tokens([AddedToken(t, lstrip=True, normalized=False) for t in extra])
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", special_tokens=[("<s>", BOS), ("</s>", EOS)]
        )
        if (
            tok.get_vocab_size() != VOCAB_SIZE
            or tok.token_to_id("<code_0>") != CODE_OFFSET
            or tok.token_to_id(f"<bin_{NUM_BINS - 1}>") != VOCAB_SIZE - 1
        ):
            raise InputError("tokenizer vocabulary does not produce OFA's 59457-id layout")
        self._tok = tok
        self._id_to_token = {i: t for t, i in self._vocab.items()}
        # Training and evaluation encode the same prompts and answers many times over.
        self._encoded: dict[tuple[str, bool], tuple[int, ...]] = {}

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_official(
        cls, encoder_json: PathLike, vocab_bpe: PathLike, dict_txt: PathLike
    ) -> OFATokenizer:
        """Build from OFA's ``utils/BPE`` files (GPT-2 encoder.json + vocab.bpe, fairseq dict)."""
        encoder = _read_json(encoder_json)
        gpt2_id_to_token = {i: t for t, i in encoder.items()}
        vocab = {"<s>": BOS, "<pad>": PAD, "</s>": EOS, "<unk>": UNK}
        for n, line in enumerate(_read_text(dict_txt).splitlines(), 1):
            if not line:
                continue
            # "<GPT-2 id or symbol> <count>"; the count (and any flag after it) is unused.
            symbol = line.rsplit(" ", 1)[0]
            if symbol.isdigit():
                if int(symbol) not in gpt2_id_to_token:
                    raise InputError(f"{dict_txt}, line {n}: GPT-2 id {symbol} not in encoder")
                token = gpt2_id_to_token[int(symbol)]
            else:
                token = symbol  # madeupword0000..0002 are literal symbols
            if token in vocab:
                raise InputError(f"{dict_txt}, line {n}: duplicate symbol {symbol!r}")
            vocab[token] = len(vocab)
        if len(vocab) != 4 + _NUM_DICT_SYMBOLS:
            raise InputError(
                f"{dict_txt} has {len(vocab) - 4} symbols; OFA's dict.txt has {_NUM_DICT_SYMBOLS}"
            )
        vocab["<mask>"] = MASK
        return cls(vocab, _parse_merges(_read_text(vocab_bpe), vocab_bpe))

    @classmethod
    def from_bart(cls, vocab_json: PathLike, merges_txt: PathLike) -> OFATokenizer:
        """Build from BART/HF-style ``vocab.json`` (ids 0..50264) and ``merges.txt``."""
        raw = _read_json(vocab_json)
        vocab: dict[str, int] = {}
        for token, i in raw.items():
            if not isinstance(i, int):
                raise InputError(f"{vocab_json}: id of {token!r} is not an integer")
            if i < TEXT_VOCAB_SIZE:
                vocab[token] = i
            elif _extra_token(i) != token:
                # Some exports already list <code_k>/<bin_b>; accept them only at OFA's ids.
                raise InputError(f"{vocab_json}: {token!r} has id {i}, outside OFA's layout")
        try:
            _check_text_vocab(vocab)
        except InputError as e:
            raise InputError(f"{vocab_json}: {e}") from None
        return cls(vocab, _parse_merges(_read_text(merges_txt), merges_txt))

    @classmethod
    def from_dir(cls, path: PathLike) -> OFATokenizer:
        """Load from a folder with ``vocab.json`` + ``merges.txt`` or the official BPE files."""
        folder = Path(path)
        if not folder.is_dir():
            raise InputError(f"tokenizer folder not found: {folder}")
        if all((folder / f).is_file() for f in BART_FILES):
            return cls.from_bart(folder / "vocab.json", folder / "merges.txt")
        if all((folder / f).is_file() for f in OFFICIAL_FILES):
            return cls.from_official(*(folder / f for f in OFFICIAL_FILES))
        raise InputError(
            f"no tokenizer files in {folder}: expected {' + '.join(BART_FILES)} (BART/HF style) "
            f"or {' + '.join(OFFICIAL_FILES)} (official OFA)"
        )

    def save(self, directory: PathLike) -> list[Path]:
        """Write BART-style ``vocab.json`` + ``merges.txt`` (loadable by :meth:`from_dir`)."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        vocab_path, merges_path = folder / "vocab.json", folder / "merges.txt"
        ordered = dict(sorted(self._vocab.items(), key=lambda kv: kv[1]))
        vocab_path.write_text(json.dumps(ordered, ensure_ascii=False), encoding="utf-8")
        lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in self._merges]
        merges_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return [vocab_path, merges_path]

    def restricted_to(self, texts: Iterable[str]) -> OFATokenizer:
        """A tokenizer that encodes ``texts`` to exactly the ids this one gives, but holds only
        the tokens and merges they need plus the 256 byte symbols; every other text id is an
        ``<unusedN>`` placeholder. Lets a model for a closed vocabulary (the embedded demo)
        ship without the full BPE files. Other text still encodes, as byte-level pieces."""
        ranks = {pair: r for r, pair in enumerate(self._merges)}
        keep = set(pre_tokenizers.ByteLevel.alphabet()) | set(_SPECIALS)
        merges: set[int] = set()
        for text in texts:
            for word, _ in self._tok.pre_tokenizer.pre_tokenize_str(text):
                parts = list(word)
                while len(parts) > 1:  # GPT-2 BPE: merge the best-ranked adjacent pair
                    rank, i = min((ranks.get(pair, len(ranks)), i)
                                  for i, pair in enumerate(zip(parts, parts[1:], strict=False)))
                    if rank == len(ranks):
                        break
                    merges.add(rank)
                    parts[i:i + 2] = [parts[i] + parts[i + 1]]
                keep.update(parts)
        kept_merges = [self._merges[r] for r in sorted(merges)]
        keep.update(a + b for a, b in kept_merges)
        vocab = {t: i for t, i in self._vocab.items() if t in keep}
        used = set(vocab.values())
        vocab.update({f"<unused{i}>": i for i in range(TEXT_VOCAB_SIZE) if i not in used})
        return OFATokenizer(vocab, kept_merges)

    # ------------------------------------------------------------------ encoding

    def encode(self, text: str, add_bos_eos: bool = True) -> list[int]:
        """Ids of ``text``; ``[BOS] + ids + [EOS]`` when ``add_bos_eos`` (OFA's source format)."""
        if not isinstance(text, str):
            raise InputError(f"text must be a str, got {type(text).__name__}")
        key = (text, bool(add_bos_eos))
        ids = self._encoded.get(key)
        if ids is None:
            require_utf8(text)
            ids = tuple(self._tok.encode(text, add_special_tokens=add_bos_eos).ids)
            if len(self._encoded) >= _ENCODE_CACHE_SIZE:
                self._encoded.clear()
            self._encoded[key] = ids
        return list(ids)

    def encode_batch(self, texts: Sequence[str], add_bos_eos: bool = True) -> list[list[int]]:
        """:meth:`encode` for many texts (runs in parallel inside ``tokenizers``)."""
        if isinstance(texts, str):
            raise InputError("encode_batch expects a list of str, got a single str")
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InputError(f"texts[{i}] must be a str, got {type(t).__name__}")
            require_utf8(t, f"texts[{i}]")
        encs = self._tok.encode_batch(texts, add_special_tokens=add_bos_eos)
        return [e.ids for e in encs]

    # ------------------------------------------------------------------ decoding

    def decode(self, ids: IdSequence, skip_special: bool = True) -> str:
        """Text of ``ids``. ``skip_special`` drops BOS/PAD/EOS; codes/bins stay as strings.

        Runs of BPE ids are decoded together (so multi-byte characters survive); ``<code_k>``,
        ``<bin_b>`` and ``<mask>`` get one space before them unless they start the text, which
        encodes back to the same ids.
        """
        pieces: list[str] = []
        run: list[int] = []
        for i in as_id_list(ids):
            if 4 <= i < MASK:
                run.append(i)
                continue
            if skip_special and i in (BOS, PAD, EOS):
                continue
            if run:
                pieces.append(self._tok.decode(run, skip_special_tokens=False))
                run = []
            token = self.id_to_token(i)
            space = " " if i >= MASK and pieces else ""
            pieces.append(space + token)
        if run:
            pieces.append(self._tok.decode(run, skip_special_tokens=False))
        return "".join(pieces)

    def decode_batch(self, batch: Iterable[IdSequence], skip_special: bool = True) -> list[str]:
        """:meth:`decode` for each row (a list of id lists or a 2-D tensor)."""
        return [self.decode(ids, skip_special=skip_special) for ids in batch]

    # ------------------------------------------------------------------ vocabulary

    def id_to_token(self, i: int) -> str:
        """Vocabulary string of id ``i`` (byte-level BPE form for text ids, e.g. ``'Ġwhat'``)."""
        extra = _extra_token(i)
        if extra is not None:
            return extra
        if i in self._id_to_token:
            return self._id_to_token[i]
        raise InputError(f"token id {i} is outside the vocabulary [0, {VOCAB_SIZE})")

    def token_to_id(self, token: str) -> int | None:
        """Id of a vocabulary string (``'<bin_5>'``, ``'Ġwhat'``), or None if unknown."""
        return self._tok.token_to_id(token)

    @property
    def vocab_size(self) -> int:
        """59457, the size of OFA's shared embedding."""
        return VOCAB_SIZE

    # The layout facts every tokenizer gives (ofa.tokenizer_cn.ChineseTokenizer has its own):
    # tasks, boxes and generation read them instead of the English constants.
    language = "en"
    mask_id = MASK
    code_offset = CODE_OFFSET
    bin_offset = BIN_OFFSET

    @property
    def backend(self) -> Tokenizer:
        """The underlying ``tokenizers.Tokenizer`` (do not change its settings)."""
        return self._tok

    def __len__(self) -> int:
        return VOCAB_SIZE

    def __repr__(self) -> str:
        return f"OFATokenizer(vocab_size={VOCAB_SIZE})"


def pad_batch(
    seqs: Sequence[Sequence[int]], pad_to: int | None = None, pad_id: int = PAD
) -> torch.Tensor:
    """Right-pad id lists into a ``(B, L)`` LongTensor; ``L = max(len, pad_to)``.

    The padding mask the model needs is ``ids.eq(PAD)``.
    """
    if isinstance(seqs, torch.Tensor):
        raise InputError("pad_batch expects a list of id lists, not a tensor")
    rows = [as_id_list(s) for s in seqs]
    if not rows:
        raise InputError("pad_batch got an empty batch")
    longest = max(len(r) for r in rows)
    if pad_to is not None and pad_to < longest:
        raise InputError(f"pad_to={pad_to} is shorter than the longest sequence ({longest})")
    width = longest if pad_to is None else pad_to
    return torch.tensor([r + [pad_id] * (width - len(r)) for r in rows], dtype=torch.long
                        ).view(len(rows), width)


# ---------------------------------------------------------------------- helpers


def _extra_token(i: int) -> str | None:
    """``<code_k>``/``<bin_b>`` string of an id past the text vocabulary, else None."""
    if CODE_OFFSET <= i < CODE_OFFSET + NUM_CODES:
        return f"<code_{i - CODE_OFFSET}>"
    if BIN_OFFSET <= i < BIN_OFFSET + NUM_BINS:
        return f"<bin_{i - BIN_OFFSET}>"
    return None


def as_id_list(ids: IdSequence, what: str = "ids") -> list[int]:
    """A 1-D id tensor or sequence of ints as a list; InputError naming ``what`` otherwise."""
    if isinstance(ids, torch.Tensor):
        if ids.dim() != 1:
            raise InputError(f"{what} must be 1-D, got shape {tuple(ids.shape)}")
        return [int(i) for i in ids.tolist()]
    try:
        return [int(i) for i in ids]
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a sequence of integer ids, got {ids!r:.80}") from None


def _check_text_vocab(vocab: dict[str, int]) -> dict[str, int]:
    for token, i in _SPECIALS.items():
        if vocab.get(token) != i:
            raise InputError(f"vocabulary must map {token} to id {i} (got {vocab.get(token)})")
    ids = sorted(vocab.values())
    if ids != list(range(TEXT_VOCAB_SIZE)):
        raise InputError(
            f"vocabulary must hold ids 0..{TEXT_VOCAB_SIZE - 1} exactly once "
            f"(got {len(ids)} entries, max id {ids[-1] if ids else None})"
        )
    return dict(vocab)
