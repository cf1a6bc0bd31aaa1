"""Character-level tokenizer: every distinct character of the corpus is one token.

Shared by train.py (which builds it from the text) and generate.py (which rebuilds it from the checkpoint).
"""

import numpy as np


class CharTokenizer:
    """Maps each character of a fixed vocabulary to its index in the sorted vocabulary, and back."""

    def __init__(self, chars: str):
        if len(set(chars)) != len(chars):
            raise ValueError("vocabulary characters must be distinct")
        self.chars = chars  # the whole vocabulary as one string: plain data, stored as-is in checkpoints
        self.stoi = {ch: i for i, ch in enumerate(chars)}

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
        """Turn text into an array of token ids; raises ValueError naming any character outside the vocabulary."""
        missing = self.unknown(text)
        if missing:
            raise ValueError("characters not in the vocabulary: " + " ".join(repr(c) for c in missing))
        dtype = np.uint16 if self.vocab_size <= 2**16 else np.int32
        return np.fromiter((self.stoi[c] for c in text), dtype=dtype, count=len(text))

    def decode(self, ids) -> str:
        """Turn a sequence of token ids back into text."""
        return "".join(self.chars[int(i)] for i in ids)
