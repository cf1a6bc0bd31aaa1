"""Byte-level BPE (--tokenizer bpe): the 256 byte values plus merges learned from the text, from the Hugging
Face `tokenizers` library. Any text encodes (no character is ever unknown) in fewer tokens than characters.
"""

import json
from collections.abc import Iterable, Iterator

import numpy as np

from extras.tokenizer import ids_dtype

MAX_CARRY_CHARS = 1 << 24  # text held over to the next chunk while waiting for a place to cut it (4 chunks)
PIECES_PER_CHUNK = 16  # texts per encode_many call, so every core has work


def hf_tokenizers():
    """The Hugging Face `tokenizers` library, imported on first use: char-level runs work without it (in a
    notebook with only torch, say); BPE without it is a ValueError that says how to get it."""
    try:
        import tokenizers
    except ImportError:
        raise ValueError("byte-level BPE needs the Hugging Face tokenizers package: "
                         "pip install tokenizers") from None
    return tokenizers


def byte_of_symbol() -> dict[str, int]:
    """Byte-level BPE's stand-in characters back to the bytes they stand for.

    Byte-level BPE (GPT-2's) writes each byte as a printable character: the printable Latin-1 bytes as
    themselves, the other 68 (space, newline, control bytes...) as the characters from U+0100 on, in byte
    order. So " the" is stored in the vocabulary as "Ġthe" (Ġ is U+0120, byte 32).
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    table = {chr(b): b for b in printable}
    table.update({chr(256 + n): b for n, b in enumerate(others)})
    return table


def check_bpe_vocab_size(vocab_size: int) -> None:
    """ValueError unless vocab_size leaves room for the 256 single bytes."""
    if vocab_size < 256:
        raise ValueError("vocab_size must be at least 256 (byte-level BPE starts from the 256 byte values), "
                         f"got {vocab_size}")


class BPETokenizer:
    """Byte-level BPE from the Hugging Face `tokenizers` library: the 256 byte values plus learned merges.

    Every text is a sequence of UTF-8 bytes, so no character is ever unknown. A token is a byte sequence that
    may end in the middle of a multi-byte character (an emoji is 4 bytes); decode() of such a piece gives
    "\ufffd" there, which is why generation prints through a StreamDecoder.
    """

    kind = "bpe"

    def __init__(self, json_str: str):
        hf = hf_tokenizers()
        try:
            self._tok = hf.Tokenizer.from_str(json_str)
            config = json.loads(json_str)
        except Exception as e:  # the library raises a bare Exception for malformed JSON
            raise ValueError(f"not a valid tokenizer JSON ({str(e)[:200]})") from None
        # Only byte-level BPE encodes every text; another tokenizer would silently map unknown text to
        # nothing.
        model, pre = (config.get(k) or {} for k in ("model", "pre_tokenizer"))
        if model.get("type") != "BPE" or pre.get("type") != "ByteLevel":
            raise ValueError(f"not a byte-level BPE tokenizer (model {model.get('type')}, "
                             f"pre-tokenizer {pre.get('type')})")
        self._json = self._tok.to_str()  # the library's own serialisation, so equal tokenizers compare equal

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> "BPETokenizer":
        """Learn merges on texts until there are vocab_size tokens (the 256 bytes included) or nothing left
        to merge."""
        check_bpe_vocab_size(vocab_size)
        hf = hf_tokenizers()
        tok = hf.Tokenizer(hf.models.BPE())
        # Split into GPT-2 style words ("Hello", " world", "!") and map each byte to a printable stand-in
        # character.
        tok.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = hf.decoders.ByteLevel()
        trainer = hf.trainers.BpeTrainer(
            vocab_size=vocab_size,
            initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, seen in the text or not
            special_tokens=[],
            show_progress=False,
        )
        # word counts, then merges by count (ties by pair): deterministic
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok.to_str())

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    @property
    def dtype(self) -> np.dtype:
        return ids_dtype(self.vocab_size)

    def unknown(self, text: str) -> list[str]:
        """Always []: byte-level BPE encodes any text."""
        return []

    def encode(self, text: str) -> np.ndarray:
        """Turn text into an array of token ids."""
        return np.array(self._tok.encode(text).ids, dtype=self.dtype)

    def encode_many(self, texts: list[str]) -> np.ndarray:
        """Encode several texts in parallel (in Rust) and concatenate their ids, in order."""
        # encode_batch_fast (tokenizers >= 0.21) skips computing character offsets, which we never use.
        encode_batch = getattr(self._tok, "encode_batch_fast", self._tok.encode_batch)
        parts = [np.array(e.ids, dtype=self.dtype) for e in encode_batch(texts)]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=self.dtype)

    def decode(self, ids) -> str:
        """Turn a sequence of token ids back into text ("\ufffd" where the ids end inside a character)."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        # the library would silently skip them
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"token ids must be in [0, {self.vocab_size}), got {ids.min()}..{ids.max()}")
        return self._tok.decode(ids.tolist())

    def to_string(self) -> str:
        """The tokenizer as a JSON string: what a checkpoint stores."""
        return self._json

    def token_bytes(self) -> list[bytes]:
        """The bytes each token id stands for, by id: whole characters, or part of one (an emoji's first two
        bytes)."""
        table = byte_of_symbol()
        out = [b""] * self.vocab_size
        for symbols, i in self._tok.get_vocab().items():  # stand-in string -> id
            out[i] = bytes(table[s] for s in symbols)
        return out


# Encoding a text of any size, a chunk at a time (extras/dataset.py streams the chunks): a chunk is cut only
# where BPE would give the same tokens on both sides, so the ids are exactly those of the whole text.


def write_bpe_ids(f, tokenizer: BPETokenizer, chunks: Iterator[str]) -> int:
    """Encode a stream of text chunks into f, several pieces at once; return the number of ids written."""
    n = 0
    for batch in piece_batches(chunks):
        ids = tokenizer.encode_many(batch)
        f.write(ids.tobytes())
        n += len(ids)
    return n


def safe_cut(text: str, lo: int, hi: int) -> int:
    """The largest i with lo < i < hi where text can be cut in two without changing its BPE tokens; -1 if
    none.

    Safe: just before a newline (or, failing that, a space) that follows a non-space character. The byte-level
    pre-tokenizer splits text into words with GPT-2's regex, whose matches never run from a non-space
    character into whitespace after it, so both sides of such a cut split into the same words as they do in
    the whole text; BPE then works within words. So encoding the pieces one by one gives exactly the ids of
    the whole text.
    """
    for sep in ("\n", " "):
        i = text.rfind(sep, lo + 1, hi)
        while i > 0 and text[i - 1].isspace():
            i = text.rfind(sep, lo + 1, i)
        if i > lo:
            return i
    return -1


def split_at_safe_cuts(text: str, n: int) -> list[str]:
    """Cut text into about n pieces of similar length, at safe places only."""
    cuts = [0]
    for k in range(1, n):
        i = safe_cut(text, cuts[-1], k * len(text) // n)
        if i > 0:
            cuts.append(i)
    cuts.append(len(text))
    return [text[a:b] for a, b in zip(cuts, cuts[1:])]


def piece_batches(chunks: Iterator[str]) -> Iterator[list[str]]:
    """Regroup a stream of text chunks into lists of pieces, cut only at safe places (see safe_cut)."""
    carry = ""  # the text after the last safe cut, which the next chunk may continue
    for chunk in chunks:
        text = carry + chunk
        end = safe_cut(text, 0, len(text))
        if end < 0:
            if len(text) < MAX_CARRY_CHARS:
                carry = text
                continue
            # megabytes without a space or newline: cut anyway (the ids still decode to the text)
            end = len(text)
        carry = text[end:]
        yield split_at_safe_cuts(text[:end], PIECES_PER_CHUNK)
    if carry:
        yield split_at_safe_cuts(carry, PIECES_PER_CHUNK)


def count_chars(tokenizer, ids: np.ndarray, chunk: int = 1 << 20) -> int:
    """How many characters the token ids spell, decoded a chunk at a time (a BPE token can hold several)."""
    if tokenizer.kind == "char":
        return len(ids)  # one character per token
    from extras.streaming import StreamDecoder  # BPE: a multi-byte character cut between chunks counts once

    decoder = StreamDecoder(tokenizer)
    n = sum(len(decoder.push(ids[i : i + chunk].tolist())) for i in range(0, len(ids), chunk))
    return n + len(decoder.flush())
