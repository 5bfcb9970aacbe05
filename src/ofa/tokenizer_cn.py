"""The vocabulary of the Chinese OFA checkpoints (OFA-CN, the Chinese caption / grounding
models, OFA-OCR): BERT-Chinese WordPiece laid out as OFA's fairseq dictionary.

Ids (OFA-Sys/OFA tasks/ofa_task.py with ``bpe=bert``, ``utils/BERT_CN_dict``): the 4 fairseq
specials (``<s> <pad> </s> <unk>``), the WordPiece vocabulary at line + 4 (``[UNK]`` is 104,
the id the released models were trained with), ``<mask>``, then the 8,192 image codes and the
1,000 location bins: 30,325 ids for the 21,128-line vocabulary. Every offset is derived from
the vocabulary's length, never the English 50265 / 58457.

Text goes through BERT's basic tokenizer as fairseq's ``BertBPE`` runs it (``BertTokenizer(
vocab, do_lower_case=True)``): control characters dropped, lower case, accents stripped, every
CJK character and punctuation mark its own token, no NFKC (full-width letters stay), then
WordPiece, a word with an unknown piece becoming ``[UNK]``. BERT's own special strings
(``[MASK]``, ``[UNK]``, ...) in a text stay whole, as BertTokenizer keeps them. Decoding joins
the tokens with spaces and glues ``##`` pieces, as the official ``decode_fn`` does (a space
between Chinese characters; the OCR metric removes spaces).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, models, normalizers, pre_tokenizers

from .errors import InputError
from .tokenizer import BOS, EOS, NUM_BINS, NUM_CODES, PAD, OFATokenizer, require_utf8

__all__ = ["AnyTokenizer", "ChineseTokenizer", "CN_VOCAB_FILES"]

CN_VOCAB_FILES = ("vocab.txt", "dict.txt")  # either one: BERT's vocab, or fairseq's dict
NUM_SPECIALS = 4  # <s> <pad> </s> <unk> before the WordPiece vocabulary
BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_CLEANUPS = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
             (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))  # HF's cleanup


def _read_lines(path: Path) -> list[str]:
    """A vocabulary file's lines, split on newlines only (two BERT tokens hold U+2028)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except OSError as e:
        raise InputError(f"cannot read {path}: {e}") from None
    lines = text.split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


class ChineseTokenizer:
    """Encode and decode the Chinese OFA checkpoints' ids (module docstring)."""

    language = "zh"

    def __init__(self, wordpieces: Sequence[str]) -> None:
        """Build from the WordPiece vocabulary in id order (``vocab.txt``'s lines)."""
        if "[UNK]" not in wordpieces:
            raise InputError("a BERT vocabulary needs [UNK]")
        self._pieces = list(wordpieces)
        vocab: dict[str, int] = {}
        for i, piece in enumerate(self._pieces):
            vocab.setdefault(piece, i)
        tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
        tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                    strip_accents=True, lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                for t in BERT_SPECIALS if t in vocab])
        self._tok = tok
        self.mask_id = NUM_SPECIALS + len(self._pieces)
        self.code_offset = self.mask_id + 1
        self.bin_offset = self.code_offset + NUM_CODES
        self.vocab_size = self.bin_offset + NUM_BINS
        self.unk_id = NUM_SPECIALS + vocab["[UNK]"]

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ChineseTokenizer:
        """From BERT's ``vocab.txt`` (one token a line) or OFA's fairseq ``dict.txt`` (token,
        space, count). A ``vocab.txt`` that already starts with the fairseq specials (as
        ModelScope's model folders write it) is read without them, so the ids stay the
        official ones."""
        p = Path(path)
        if not p.is_file():
            raise InputError(f"Chinese vocabulary not found: {p}")
        lines = _read_lines(p)
        if p.name == "dict.txt" or all(" " in line for line in lines[:100] if line):
            lines = [line.rsplit(" ", 1)[0] if " " in line else line for line in lines]
        if lines[:NUM_SPECIALS] == ["<s>", "<pad>", "</s>", "<unk>"]:
            lines = lines[NUM_SPECIALS:]
            if lines and lines[-1] == "<mask>":
                lines = lines[:-1]
        return cls(lines)

    @classmethod
    def from_dir(cls, path: str | os.PathLike[str]) -> ChineseTokenizer:
        """From a folder holding ``vocab.txt`` or ``dict.txt`` (vocab.txt preferred)."""
        folder = Path(path)
        for name in CN_VOCAB_FILES:
            if (folder / name).is_file():
                return cls.from_file(folder / name)
        raise InputError(f"no Chinese vocabulary in {folder}: expected "
                         f"{' or '.join(CN_VOCAB_FILES)}")

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"ChineseTokenizer(vocab_size={self.vocab_size})"

    def encode(self, text: str, add_bos_eos: bool = True) -> list[int]:
        """Ids of ``text`` (BOS ... EOS unless ``add_bos_eos=False``)."""
        text = require_utf8(text)
        ids = [NUM_SPECIALS + i for i in self._tok.encode(text, add_special_tokens=False).ids]
        return [BOS, *ids, EOS] if add_bos_eos else ids

    def encode_batch(self, texts: Sequence[str], add_bos_eos: bool = True) -> list[list[int]]:
        """:meth:`encode` for each text."""
        if isinstance(texts, str):
            raise InputError("encode_batch expects a list of str, got a single str")
        return [self.encode(t, add_bos_eos) for t in texts]

    def save(self, directory: str | os.PathLike[str]) -> list[Path]:
        """Write ``vocab.txt`` (loadable by :meth:`from_dir`)."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "vocab.txt"
        path.write_bytes(("\n".join(self._pieces) + "\n").encode("utf-8"))
        return [path]

    def token_to_id(self, token: str) -> int | None:
        """Id of a vocabulary string (``'<bin_5>'``, ``'图'``), or None if unknown."""
        for prefix, offset, count in (("<code_", self.code_offset, NUM_CODES),
                                      ("<bin_", self.bin_offset, NUM_BINS)):
            k = token[len(prefix):-1]
            if token.startswith(prefix) and token.endswith(">") and k.isdigit() \
                    and int(k) < count:
                return offset + int(k)
        specials = {"<s>": BOS, "<pad>": PAD, "</s>": EOS, "<unk>": 3, "<mask>": self.mask_id}
        if token in specials:
            return specials[token]
        i = self._tok.token_to_id(token)
        return None if i is None else NUM_SPECIALS + i

    def code_id(self, code: int) -> int:
        return self.code_offset + code

    def bin_id(self, b: int) -> int:
        return self.bin_offset + b

    def id_to_token(self, i: int) -> str:
        if not 0 <= i < self.vocab_size:
            raise InputError(f"token id {i} is outside the vocabulary [0, {self.vocab_size})")
        if i < NUM_SPECIALS:
            return ("<s>", "<pad>", "</s>", "<unk>")[i]
        if i < self.mask_id:
            return self._pieces[i - NUM_SPECIALS]
        if i == self.mask_id:
            return "<mask>"
        if i < self.bin_offset:
            return f"<code_{i - self.code_offset}>"
        return f"<bin_{i - self.bin_offset}>"

    def decode_batch(self, batch: Sequence[Sequence[int]], skip_special: bool = True
                     ) -> list[str]:
        """:meth:`decode` for each row."""
        return [self.decode(ids, skip_special) for ids in batch]

    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str:
        """Text of ``ids``: tokens joined by spaces, ``##`` pieces glued (official decode)."""
        skipped = {BOS, PAD, EOS} if skip_special else set()
        tokens = [self.id_to_token(int(i)) for i in ids if int(i) not in skipped]
        text = " ".join(tokens).replace(" ##", "").strip()
        for old, new in _CLEANUPS:
            text = text.replace(old, new)
        return text



#: either vocabulary: the English checkpoints' GPT-2 BPE or the Chinese ones' WordPiece
AnyTokenizer = OFATokenizer | ChineseTokenizer
