"""Encode a UTF-8 text file of any size into a file of token ids, once, and read it back as a memory map.

Texts over text.IN_MEMORY_BYTES and every BPE run come here (smaller char texts are read whole:
extras/text.py). prepare() is the one entry point. It streams the text a chunk at a time (memory stays bounded
by CHUNK_CHARS whether the file is 1 MB or 100 GB), writes the ids to a cache file named after the text's
sha256 and the tokenizer, and returns them as read-only np.memmap arrays: training reads a batch's windows and
the OS pages in only those. The next run on the same text (and --resume, and evaluate.py) finds the cache and
starts at once.

Layout of cache_dir, for a text whose sha256 starts with KEY:
    KEY-char.bin      token ids of the train split then the val split, raw (dtype in the .json)
    KEY-char.json     what the .bin holds: the tokenizer, the split sizes, the text's sha256; written last
The part after KEY is "char" or "bpe512" (tokenizers derived from the text) or "tok" + a hash of a tokenizer
that was passed in (a checkpoint's, when the text is not the one it was trained on).
"""

import argparse
import codecs
import hashlib
import io
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from extras.bpe import check_bpe_vocab_size
from extras.checkpoint import tokenizer_from_dict
from extras.cli import use_any_console
from extras.files import write_atomically
from extras.text import DEFAULT_DATA, TRAIN_FRACTION, DataError, TokenData  # noqa: F401
from extras.tokenizer import N_CODE_POINTS, CharTokenizer, code_points, name_chars, tokenizer_to_dict

# characters read and encoded at a time (4M): tens of MB of working memory, whatever the file size
CHUNK_CHARS = 1 << 22
FORMAT = 1  # version of the cache layout; a cache with another version is rebuilt


def check_text_file(path: Path) -> None:
    """Raise DataError if path is missing, a directory, unreadable or empty (UTF-8 is checked as it is
    read)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file {path} does not exist; check the --data path")
    if path.is_dir():
        raise DataError(f"data path {path} is a directory; pass a text file with --data")
    try:
        with open(path, "rb") as f:
            empty = not f.read(1)
    except OSError as e:
        raise DataError(f"cannot read data file {path}: {e.strerror}") from None
    if empty:
        raise DataError(f"data file {path} is empty; pass a text file with --data")


def char_tokenizer_from_mask(seen: np.ndarray) -> CharTokenizer:
    """A CharTokenizer of the characters marked in a boolean array indexed by code point (True: it occurs),
    sorted as CharTokenizer.from_text sorts them."""
    if seen.shape != (N_CODE_POINTS,):
        raise ValueError(f"the mask must have one entry per code point ({N_CODE_POINTS}), "
                         f"got shape {seen.shape}")
    return CharTokenizer("".join(map(chr, np.flatnonzero(seen))))  # flatnonzero is sorted, and so this is


def iter_text(path: Path, start: int = 0, stop: int | None = None,
              chunk_chars: int = CHUNK_CHARS) -> Iterator[str]:
    """Yield the characters [start, stop) of a UTF-8 file, at most chunk_chars at a time.

    Newlines are read as open() reads them in text mode: "\\r\\n" and "\\r" become "\\n". We decode the bytes
    ourselves (the same decoders open() uses) only to name the byte offset of a bad byte in the error.
    """
    utf8 = codecs.getincrementaldecoder("utf-8")()
    decoder = io.IncrementalNewlineDecoder(utf8, translate=True)
    pos = 0  # characters decoded before this block
    offset = 0  # bytes read before this block
    try:
        with open(path, "rb") as f:
            while stop is None or pos < stop:
                # n bytes decode to at most n characters (n + 1 with a held-back "\r")
                block = f.read(chunk_chars)
                held = len(utf8.getstate()[0])  # bytes of a character that the previous block cut in two
                try:
                    text = decoder.decode(block, final=not block)
                except UnicodeDecodeError as e:
                    raise DataError(f"data file {path} is not UTF-8 text "
                                    f"(bad byte at offset {offset - held + e.start}); "
                                    "pass a UTF-8 text file with --data") from None
                offset += len(block)
                lo, hi = max(start - pos, 0), len(text) if stop is None else min(stop - pos, len(text))
                for i in range(lo, hi, chunk_chars):
                    yield text[i : min(i + chunk_chars, hi)]
                pos += len(text)
                if not block:
                    break
    except OSError as e:
        raise DataError(f"cannot read data file {path}: {e.strerror}") from None


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read 1 MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def prepare(path: Path, cache_dir: Path, tokenizer=None, kind: str = "char", vocab_size: int = 1024,
            log: Callable[[str], None] = print, chunk_chars: int = CHUNK_CHARS) -> TokenData:
    """Encode the text at path once (or find it already encoded in cache_dir) and return its train/val token
    ids.

    tokenizer=None derives one from the text: kind "char" (every distinct character) or "bpe" (byte-level BPE
    with vocab_size tokens, trained on the train split only, so validation text stays unseen). A given
    tokenizer (from a checkpoint) is used as it is; a character it does not know is a DataError.

    Memory stays bounded by chunk_chars, except that BPE training keeps a count of every distinct word (the HF
    trainer's way), which grows with the text, if much more slowly than it.
    """
    t0 = time.perf_counter()
    path, cache_dir = Path(path), Path(cache_dir)
    if tokenizer is None and kind not in ("char", "bpe"):
        raise ValueError(f"unknown tokenizer kind {kind!r} (expected 'char' or 'bpe')")
    if tokenizer is None and kind == "bpe":
        check_bpe_vocab_size(vocab_size)  # now, not after an hour of reading
    check_text_file(path)
    try:
        stat = path.stat()
        sha = file_sha256(path)
    except OSError as e:
        raise DataError(f"cannot read data file {path}: {e.strerror}") from None
    key = sha[:16]

    # 1. A cache from an earlier run? Specs name the tokenizer; a derived one is found by how it was derived.
    if tokenizer is None:
        spec = "char" if kind == "char" else f"bpe{vocab_size}"
        candidates = [spec]
    else:
        spec = "tok" + hashlib.sha256(tokenizer.to_string().encode("utf-8")).hexdigest()[:12]
        if tokenizer.kind == "char":
            derived = ["char"]
        else:  # "bpe512", "bpe1024", ...: any BPE derived from this text may be the one given
            derived = sorted(p.stem[len(key) + 1 :] for p in cache_dir.glob(f"{key}-bpe*.json"))
        candidates = [*derived, spec]
    for candidate in candidates:
        bin_path = cache_dir / f"{key}-{candidate}.bin"
        meta, stored, problem = _read_cache(bin_path, sha, tokenizer)
        if meta is not None:
            log(f"tokens: reusing {bin_path} ({meta['n_train'] + meta['n_val']:,} tokens, sha256 {sha[:12]})")
            return _token_data(bin_path, meta, stored if tokenizer is None else tokenizer, True, t0)
        if problem and candidate == spec:
            log(f"tokens: rebuilding {bin_path} ({problem})")

    # 2. Encode: derive the tokenizer if need be, then stream the ids into the .bin, then write the .json.
    bin_path = cache_dir / f"{key}-{spec}.bin"
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        if tokenizer is None and kind == "char":
            seen = np.zeros(N_CODE_POINTS, dtype=bool)  # seen[c]: code point c occurs in the text
            for chunk in iter_text(path, chunk_chars=chunk_chars):
                seen[code_points(chunk)] = True
            tokenizer = char_tokenizer_from_mask(seen)
        # BPE needs the split point, in characters, before encoding
        elif tokenizer is None or tokenizer.kind == "bpe":
            n_chars = sum(len(chunk) for chunk in iter_text(path, chunk_chars=chunk_chars))
            n_train_chars = int(TRAIN_FRACTION * n_chars)
            if tokenizer is None:
                log(f"tokens: training a byte-level BPE tokenizer (vocab {vocab_size}) "
                    f"on {n_train_chars:,} characters")
                from extras.bpe import BPETokenizer, piece_batches  # only for --tokenizer bpe
                batches = piece_batches(iter_text(path, 0, n_train_chars, chunk_chars))
                tokenizer = BPETokenizer.train((piece for batch in batches for piece in batch), vocab_size)

        # an old meta file must never describe the new .bin
        bin_path.with_suffix(".json").unlink(missing_ok=True)
        # one token per character, so the split is the same in ids as in characters
        if tokenizer.kind == "char":
            n_chars = write_atomically(bin_path, lambda f: _write_char_ids(f, path, tokenizer, chunk_chars))
            n_train = n_train_chars = int(TRAIN_FRACTION * n_chars)
            n_val = n_chars - n_train
        else:  # each split encoded on its own, so no token straddles the two
            from extras.bpe import write_bpe_ids
            n_train, n_val = write_atomically(bin_path, lambda f: (
                write_bpe_ids(f, tokenizer, iter_text(path, 0, n_train_chars, chunk_chars)),
                write_bpe_ids(f, tokenizer, iter_text(path, n_train_chars, None, chunk_chars))))
        if _file_id(path) != _file_id(path, stat):
            bin_path.unlink()
            raise DataError(f"data file {path} changed while it was being encoded; "
                            "run again once it is complete")
        meta = {"format": FORMAT, "source": str(path.resolve()), "sha256": sha,
                "tokenizer": tokenizer_to_dict(tokenizer), "dtype": tokenizer.dtype.name, "n_train": n_train,
                "n_val": n_val, "n_chars": n_chars, "n_train_chars": n_train_chars}
        payload = json.dumps(meta, indent=1).encode("utf-8")
        # last: its presence means complete
        write_atomically(bin_path.with_suffix(".json"), lambda f: f.write(payload))
    except OSError as e:
        raise DataError(f"cannot write the token cache in {cache_dir} ({e.strerror or e}); "
                        "pass a writable --cache_dir") from None

    data = _token_data(bin_path, meta, tokenizer, False, t0)
    megabytes = stat.st_size / 1e6
    log(f"tokens: encoded {n_chars:,} characters into {n_train + n_val:,} tokens in {data.seconds:.1f}s "
        f"({megabytes / max(data.seconds, 1e-9):.1f} MB/s) -> {bin_path}")
    return data


def _read_cache(bin_path: Path, sha: str, tokenizer=None) -> tuple[dict | None, object, str | None]:
    """Check the cache at bin_path: (meta, stored tokenizer, None) if it is complete and holds the text with
    this sha (encoded by tokenizer, when given); else (None, None, why not), where "why not" is None if there
    is no cache."""
    meta_path = bin_path.with_suffix(".json")
    if not meta_path.exists():
        return None, None, None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        stored = tokenizer_from_dict(meta["tokenizer"])
        n_train, n_val = meta["n_train"], meta["n_val"]
        if not all(isinstance(meta[k], int) and meta[k] >= 0
                   for k in ("n_train", "n_val", "n_chars", "n_train_chars")):
            raise ValueError("token and character counts must be non-negative integers")
    # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
    except (OSError, ValueError, KeyError, TypeError) as e:
        return None, None, f"unreadable {meta_path.name}: {str(e)[:200]}"
    if meta.get("format") != FORMAT:
        return None, None, f"cache format {meta.get('format')}, expected {FORMAT}"
    if meta.get("sha256") != sha:
        return None, None, "made from a different text"
    if tokenizer is not None and stored.to_string() != tokenizer.to_string():
        return None, None, "made with a different tokenizer"
    if meta.get("dtype") != stored.dtype.name:
        return None, None, f"dtype {meta.get('dtype')}, expected {stored.dtype.name}"
    if not bin_path.exists():
        return None, None, f"{bin_path.name} is missing"
    size, expected = bin_path.stat().st_size, (n_train + n_val) * stored.dtype.itemsize
    if size != expected:
        return None, None, f"{bin_path.name} holds {size:,} bytes, expected {expected:,}"
    return meta, stored, None


def _token_data(bin_path: Path, meta: dict, tokenizer, from_cache: bool, t0: float) -> TokenData:
    """Map the .bin read-only and split it into train and val views (no copy: pages load as batches touch
    them)."""
    ids = np.memmap(bin_path, dtype=tokenizer.dtype, mode="r")
    n_train = meta["n_train"]
    return TokenData(train=ids[:n_train], val=ids[n_train:], tokenizer=tokenizer, n_chars=meta["n_chars"],
                     n_train_chars=meta["n_train_chars"], path=bin_path, sha256=meta["sha256"],
                     from_cache=from_cache, seconds=time.perf_counter() - t0)


def _file_id(path: Path, stat: os.stat_result | None = None) -> tuple | None:
    """(size, modification time) of a file, to notice it changing while we read it; None if it is gone."""
    try:
        stat = stat or path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def _write_char_ids(f, path: Path, tokenizer: CharTokenizer, chunk_chars: int) -> int:
    """Encode the whole text chunk by chunk into f and return its length; DataError naming every character
    the tokenizer lacks."""
    n_chars, missing = 0, set()
    for chunk in iter_text(path, chunk_chars=chunk_chars):
        n_chars += len(chunk)
        try:
            ids = tokenizer.encode_fast(chunk)
        except ValueError:
            missing.update(tokenizer.unknown(chunk))  # keep reading, to name them all at once
            continue
        if not missing:
            f.write(ids.tobytes())
    if missing:
        shown = sorted(missing)[:20]
        more = f" and {len(missing) - len(shown)} more" if len(missing) > len(shown) else ""
        raise DataError(f"{path}: characters not in the vocabulary: {name_chars(shown)}{more}")
    return n_chars


def main(argv=None) -> int:
    """Encode a text ahead of training (before a torchrun launch, say); the last line printed is a JSON
    summary."""
    use_any_console()
    parser = argparse.ArgumentParser(description="Encode a UTF-8 text into the token cache train.py reads.")
    parser.add_argument("data", help="UTF-8 text file")
    parser.add_argument("--cache_dir", default="out/cache",
                        help="cache folder (train.py's default: out_dir/cache)")
    parser.add_argument("--tokenizer", default="char", choices=["char", "bpe"],
                        help="as train.py --tokenizer")
    parser.add_argument("--vocab_size", type=int, default=1024, help="as train.py --vocab_size (bpe only)")
    args = parser.parse_args(argv)
    try:
        data = prepare(Path(args.data), Path(args.cache_dir), kind=args.tokenizer, vocab_size=args.vocab_size)
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"seconds": data.seconds, "tokens": len(data.train) + len(data.val),
                      "chars": data.n_chars, "vocab": data.tokenizer.vocab_size,
                      "from_cache": data.from_cache, "path": str(data.path)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
