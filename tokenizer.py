"""Tokenizers: one token per character, or byte-level BPE (any text, fewer tokens per line).

Shared by train.py (which builds one from the text), dataset.py (which encodes the text with it) and generate.py /
evaluate.py (which rebuild it from the checkpoint). Both kinds save as plain strings (see tokenizer_to_dict), so a
checkpoint still loads with torch.load(weights_only=True).
"""

import json
from collections.abc import Iterable

import numpy as np

N_CODE_POINTS = 0x110000  # every Unicode code point, U+0000 to U+10FFFF


def ids_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned integer type that holds every token id: half the disk and memory of int32 for V <= 65536."""
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def name_chars(chars: Iterable[str]) -> str:
    """The characters as Python literals, sorted, separated by spaces: 'x' 'é' '\\t'."""
    return " ".join(repr(c) for c in sorted(chars))


def code_points(text: str) -> np.ndarray:
    """The Unicode code point of every character of text, as a uint32 array, without a Python loop per character."""
    # UTF-32 stores each character as one 4-byte integer, so the encoded bytes *are* the code point array.
    # surrogatepass: a lone surrogate (possible in a Python str, never in decoded UTF-8) is still one code point.
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def check_bpe_vocab_size(vocab_size: int) -> None:
    """ValueError unless vocab_size leaves room for the 256 single bytes."""
    if vocab_size < 256:
        raise ValueError(f"vocab_size must be at least 256 (byte-level BPE starts from the 256 byte values), got {vocab_size}")


class CharTokenizer:
    """Maps each character of a fixed vocabulary to its index in the vocabulary, and back."""

    kind = "char"

    def __init__(self, chars: str):
        if len(set(chars)) != len(chars):
            raise ValueError("vocabulary characters must be distinct")
        self.chars = chars  # the whole vocabulary as one string: plain data, stored as-is in checkpoints
        self.stoi = {ch: i for i, ch in enumerate(chars)}
        self._table = None  # code point -> token id (-1: not in the vocabulary); built on the first encode

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        """Build the vocabulary from the sorted set of characters in text."""
        return cls("".join(sorted(set(text))))

    @classmethod
    def from_mask(cls, seen: np.ndarray) -> "CharTokenizer":
        """Build the vocabulary from a boolean array indexed by code point (True: the character occurs)."""
        if seen.shape != (N_CODE_POINTS,):
            raise ValueError(f"the mask must have one entry per code point ({N_CODE_POINTS}), got shape {seen.shape}")
        return cls("".join(map(chr, np.flatnonzero(seen))))  # flatnonzero is sorted, so the vocabulary is too

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    @property
    def dtype(self) -> np.dtype:
        return ids_dtype(self.vocab_size)

    def lookup_table(self) -> np.ndarray:
        """An int32 array of 0x110000 entries (4.4 MB): the token id of each code point, -1 where it has none."""
        if self._table is None:
            table = np.full(N_CODE_POINTS, -1, dtype=np.int32)
            table[code_points(self.chars)] = np.arange(self.vocab_size, dtype=np.int32)
            self._table = table
        return self._table

    def unknown(self, text: str) -> list[str]:
        """Return the distinct characters of text that are not in the vocabulary, sorted."""
        return sorted(set(text) - self.stoi.keys())

    def encode(self, text: str) -> np.ndarray:
        """Turn text into an array of token ids; raises ValueError naming any character outside the vocabulary."""
        cps = code_points(text)  # (N,)
        ids = self.lookup_table()[cps]  # (N,) one gather for the whole text, -1 for unknown characters
        if (ids < 0).any():
            missing = map(chr, np.unique(cps[ids < 0]))
            raise ValueError("characters not in the vocabulary: " + name_chars(missing))
        return ids.astype(self.dtype)

    def decode(self, ids) -> str:
        """Turn a sequence of token ids back into text."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"token ids must be in [0, {self.vocab_size}), got {ids.min()}..{ids.max()}")
        return code_points(self.chars)[ids].tobytes().decode("utf-32-le", "surrogatepass")  # the inverse of encode

    def to_string(self) -> str:
        """The vocabulary as one string: what a checkpoint stores."""
        return self.chars


def hf_tokenizers():
    """The Hugging Face `tokenizers` library, imported on first use: char-level runs work without it (in a
    notebook with only torch, say); BPE without it is a ValueError that says how to get it."""
    try:
        import tokenizers
    except ImportError:
        raise ValueError("byte-level BPE needs the Hugging Face tokenizers package: pip install tokenizers") from None
    return tokenizers


def byte_of_symbol() -> dict[str, int]:
    """Byte-level BPE's stand-in characters back to the bytes they stand for.

    Byte-level BPE (GPT-2's) writes each byte as a printable character: the printable Latin-1 bytes as themselves,
    the other 68 (space, newline, control bytes...) as the characters from U+0100 on, in byte order. So " the" is
    stored in the vocabulary as "Ġthe" (Ġ is U+0120, byte 32).
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    table = {chr(b): b for b in printable}
    table.update({chr(256 + n): b for n, b in enumerate(others)})
    return table


class BPETokenizer:
    """Byte-level BPE from the Hugging Face `tokenizers` library: the 256 byte values plus learned merges.

    Every text is a sequence of UTF-8 bytes, so no character is ever unknown. A token is a byte sequence that may end
    in the middle of a multi-byte character (an emoji is 4 bytes); decode() of such a piece gives "\ufffd" there,
    which is why generation prints through a StreamDecoder.
    """

    kind = "bpe"

    def __init__(self, json_str: str):
        hf = hf_tokenizers()
        try:
            self._tok = hf.Tokenizer.from_str(json_str)
            config = json.loads(json_str)
        except Exception as e:  # the library raises a bare Exception for malformed JSON
            raise ValueError(f"not a valid tokenizer JSON ({str(e)[:200]})") from None
        # Only byte-level BPE encodes every text; another tokenizer would silently map unknown text to nothing.
        model, pre = (config.get(k) or {} for k in ("model", "pre_tokenizer"))
        if model.get("type") != "BPE" or pre.get("type") != "ByteLevel":
            raise ValueError(f"not a byte-level BPE tokenizer (model {model.get('type')}, pre-tokenizer {pre.get('type')})")
        self._json = self._tok.to_str()  # the library's own serialisation, so equal tokenizers compare equal

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> "BPETokenizer":
        """Learn merges on texts until there are vocab_size tokens (the 256 bytes included) or nothing left to merge."""
        check_bpe_vocab_size(vocab_size)
        hf = hf_tokenizers()
        tok = hf.Tokenizer(hf.models.BPE())
        # Split into GPT-2 style words ("Hello", " world", "!") and map each byte to a printable stand-in character.
        tok.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = hf.decoders.ByteLevel()
        trainer = hf.trainers.BpeTrainer(
            vocab_size=vocab_size,
            initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, seen in the text or not
            special_tokens=[],
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer=trainer)  # word counts, then merges by count (ties by pair): deterministic
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
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):  # the library would silently skip them
            raise ValueError(f"token ids must be in [0, {self.vocab_size}), got {ids.min()}..{ids.max()}")
        return self._tok.decode(ids.tolist())

    def to_string(self) -> str:
        """The tokenizer as a JSON string: what a checkpoint stores."""
        return self._json

    def token_bytes(self) -> list[bytes]:
        """The bytes each token id stands for, by id: whole characters, or part of one (an emoji's first two bytes)."""
        table = byte_of_symbol()
        out = [b""] * self.vocab_size
        for symbols, i in self._tok.get_vocab().items():  # stand-in string -> id
            out[i] = bytes(table[s] for s in symbols)
        return out


def tokenizer_to_dict(tok) -> dict:
    """The tokenizer as a dict of two plain strings, safe to save in a checkpoint."""
    return {"kind": tok.kind, "data": tok.to_string()}


def tokenizer_from_dict(d) -> CharTokenizer | BPETokenizer:
    """Rebuild a tokenizer saved by tokenizer_to_dict; ValueError if d is not one."""
    if not isinstance(d, dict) or not isinstance(d.get("data"), str):
        raise ValueError("a saved tokenizer must be a dict with a string 'data'")
    if d.get("kind") == "char":
        if not d["data"]:
            raise ValueError("the saved character vocabulary is empty")
        return CharTokenizer(d["data"])
    if d.get("kind") == "bpe":
        return BPETokenizer(d["data"])
    raise ValueError(f"unknown tokenizer kind {d.get('kind')!r} (expected 'char' or 'bpe')")


def tokenizer_from_checkpoint(ckpt: dict) -> CharTokenizer | BPETokenizer:
    """The tokenizer a checkpoint was trained with: ckpt["tokenizer"], or older versions' character vocabulary ckpt["vocab"]."""
    if "tokenizer" in ckpt:
        return tokenizer_from_dict(ckpt["tokenizer"])
    if "vocab" in ckpt:
        return tokenizer_from_dict({"kind": "char", "data": ckpt["vocab"]})
    raise ValueError("the checkpoint holds no tokenizer (neither 'tokenizer' nor 'vocab')")


class StreamDecoder:
    """Turns token ids into text as they arrive, never printing half a character.

    A BPE token can end part-way through a multi-byte character; decoding it alone gives "\ufffd". So we hold back
    text that ends in "\ufffd" until the next ids complete the character (or flush() gives up on it).
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.pending = []  # ids since the last point where the decoded text ended on a whole character
        self.emitted = 0  # characters of decode(pending) already returned

    def push(self, ids: list[int]) -> str:
        """Take the next ids; return the new text that is certain."""
        if self.tokenizer.kind == "char":
            return self.tokenizer.decode(ids)  # every token is a whole character
        self.pending.extend(int(i) for i in ids)
        text = self.tokenizer.decode(self.pending)
        certain = text.rstrip("\ufffd")  # a cut-off character decodes to "\ufffd" at the very end
        new = certain[self.emitted :]
        if certain == text:  # ended on a whole character: later bytes decode independently of these
            self.pending, self.emitted = [], 0
        else:
            self.emitted = len(certain)
        return new

    def flush(self) -> str:
        """Return whatever was held back (with "\ufffd" for bytes that never became a whole character)."""
        text = self.tokenizer.decode(self.pending)[self.emitted :] if self.pending else ""
        self.pending, self.emitted = [], 0
        return text
