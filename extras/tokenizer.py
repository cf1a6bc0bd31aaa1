"""Tokenizers: text to token ids and back. CharTokenizer (one token per character) is the workshop's;
byte-level BPE (--tokenizer bpe, any text, fewer tokens per line) is in extras/bpe.py.

train.py builds one from the text (extras/text.py or extras/dataset.py encodes the text with it); generate.py
and evaluate.py rebuild it from the checkpoint (extras/checkpoint.py). Both kinds save as plain strings
(tokenizer_to_dict), so a checkpoint still loads with torch.load(weights_only=True).
"""

from collections.abc import Iterable

import numpy as np

N_CODE_POINTS = 0x110000  # every Unicode code point, U+0000 to U+10FFFF


def ids_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned integer type that holds every token id: half the disk and memory of int32 for
    V <= 65536."""
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def name_chars(chars: Iterable[str]) -> str:
    """The characters as Python literals, sorted, separated by spaces: 'x' 'é' '\\t'."""
    return " ".join(repr(c) for c in sorted(chars))


def code_points(text: str) -> np.ndarray:
    """The Unicode code point of every character of text, as a uint32 array, without a Python loop per
    character."""
    # UTF-32 stores each character as one 4-byte integer, so the encoded bytes *are* the code point array.
    # surrogatepass: a lone surrogate (possible in a Python str, never in decoded UTF-8) is still one code
    # point.
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


class CharTokenizer:
    """One token per character. stoi ("string to integer") maps each character of the vocabulary to its id,
    its place in the sorted vocabulary; itos maps an id back to its character."""

    kind = "char"

    def __init__(self, chars: str):
        if len(set(chars)) != len(chars):
            raise ValueError("vocabulary characters must be distinct")
        self.chars = chars  # the whole vocabulary as one string: plain data, stored as-is in checkpoints
        self.stoi = {ch: i for i, ch in enumerate(chars)}
        self.itos = list(chars)
        self._table = None  # for encode_fast: code point -> token id, built on first use

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        """Build the vocabulary from the sorted set of characters in text."""
        return cls("".join(sorted(set(text))))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def unknown(self, text: str) -> list[str]:
        """Return the distinct characters of text that are not in the vocabulary, sorted."""
        return sorted(set(text) - self.stoi.keys())

    def encode(self, text: str) -> np.ndarray:
        """Turn text into an array of token ids; raises ValueError naming any character outside the
        vocabulary."""
        if self.unknown(text):
            raise ValueError("characters not in the vocabulary: " + name_chars(self.unknown(text)))
        return np.array([self.stoi[ch] for ch in text], dtype=self.dtype)

    def decode(self, ids) -> str:
        """Turn a sequence of token ids back into text."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"token ids must be in [0, {self.vocab_size}), got {ids.min()}..{ids.max()}")
        return "".join(self.itos[i] for i in ids)

    def to_string(self) -> str:
        """The vocabulary as one string: what a checkpoint stores."""
        return self.chars

    # What follows is the same encoding made fast for texts of any size (extras/dataset.py uses it): one array
    # lookup for a whole chunk of text instead of a dictionary lookup per character.

    @property
    def dtype(self) -> np.dtype:
        return ids_dtype(self.vocab_size)

    def lookup_table(self) -> np.ndarray:
        """An int32 array of 0x110000 entries (4.4 MB): the token id of each code point, -1 where it has
        none."""
        if self._table is None:
            table = np.full(N_CODE_POINTS, -1, dtype=np.int32)
            table[code_points(self.chars)] = np.arange(self.vocab_size, dtype=np.int32)
            self._table = table
        return self._table

    def encode_fast(self, text: str) -> np.ndarray:
        """encode(text), as one gather over the text's code points."""
        cps = code_points(text)  # (N,)
        ids = self.lookup_table()[cps]  # (N,) -1 for unknown characters
        if (ids < 0).any():
            raise ValueError("characters not in the vocabulary: "
                             + name_chars(map(chr, np.unique(cps[ids < 0]))))
        return ids.astype(self.dtype)


def tokenizer_to_dict(tok) -> dict:
    """The tokenizer as a dict of two plain strings, safe to save in a checkpoint."""
    return {"kind": tok.kind, "data": tok.to_string()}

