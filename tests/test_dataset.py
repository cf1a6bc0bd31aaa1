"""dataset.py and text.py: the streamed, cached encoding equals reading the whole text in memory, the cache is reused only when
it is complete and right, and every unusable file is a one-line DataError."""

import os

import numpy as np
import pytest

from extras import dataset
from extras.dataset import CHUNK_CHARS, DataError, iter_text, prepare
from extras.bpe import BPETokenizer
from extras.text import read_text
from extras.tokenizer import CharTokenizer
from conftest import needs

# Windows and old-Mac newlines (read as "\n"), 2-, 3- and 4-byte UTF-8 characters, a blank line, a tab, and
# trailing spaces before indented lines (whitespace runs that BPE must not see cut in two).
RAW = ("First Citizen: \r\n  Before we proceed, hear me speak. \r\n  Speak, speak.\r\n\r\n"
       "Σωκράτης — Сократ — 苏格拉底 🙂🦜\rnaïve\tcafé\n")


def write_raw(path, raw: str, repeat: int = 30):
    """Write raw (with its \\r\\n and \\r as they are) repeated, as UTF-8 bytes; return path."""
    path.write_bytes((raw * repeat).encode("utf-8"))
    return path


@pytest.fixture
def text_file(tmp_path):
    return write_raw(tmp_path / "mixed.txt", RAW)


def quiet(line):
    pass


def char_reference(path):
    """The old in-memory pipeline: read everything, vocabulary of the whole text, first 90% of the ids train."""
    text = path.read_text(encoding="utf-8")
    tok = CharTokenizer.from_text(text)
    ids = tok.encode(text)
    n = int(0.9 * len(ids))
    return tok, ids[:n], ids[n:]


# ---------------------------------------------------------------------------------------------------------------
# reading


@pytest.mark.parametrize("chunk_chars", [1, 2, 7, 4096])
def test_iter_text_reads_like_open(text_file, chunk_chars):
    text = text_file.read_text(encoding="utf-8")  # universal newlines, as train.py always read the data
    chunks = list(iter_text(text_file, chunk_chars=chunk_chars))
    assert "".join(chunks) == text
    assert max(len(c) for c in chunks) <= chunk_chars
    assert len(chunks) >= len(text) // chunk_chars  # many small reads, never the whole file at once
    assert "".join(iter_text(text_file, 5, 400, chunk_chars)) == text[5:400]
    assert "".join(iter_text(text_file, len(text) - 3, None, chunk_chars)) == text[-3:]


@pytest.mark.parametrize("content, offset", [(b"ok \xff\xfe more", 3), (b"a" * 100 + b"\xe9b", 100), (b"abc\xe2\x82", 3)])
def test_iter_text_names_the_first_bad_byte(tmp_path, content, offset):
    path = tmp_path / "latin1.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match=rf"^data file .*latin1.txt is not UTF-8 text \(bad byte at offset {offset}\); "
                                        r"pass a UTF-8 text file with --data$"):
        list(iter_text(path, chunk_chars=7))


# ---------------------------------------------------------------------------------------------------------------
# character level


@pytest.mark.parametrize("chunk_chars", [1, 7, CHUNK_CHARS])
def test_char_prepare_equals_the_in_memory_reference(text_file, tmp_path, chunk_chars):
    tok, train_ids, val_ids = char_reference(text_file)
    data = prepare(text_file, tmp_path / "cache", log=quiet, chunk_chars=chunk_chars)
    assert data.tokenizer.chars == tok.chars
    assert data.train.dtype == np.uint16 and isinstance(data.train, np.memmap)
    assert np.array_equal(data.train, train_ids) and np.array_equal(data.val, val_ids)
    assert data.n_chars == len(train_ids) + len(val_ids) and data.n_train_chars == len(train_ids)
    assert not data.train.flags.writeable and not data.from_cache
    assert data.path.parent == tmp_path / "cache" and data.path.with_suffix(".json").exists()


def test_reading_a_small_text_whole_gives_the_token_caches_ids(text_file, tmp_path):
    # train.py reads a char text of up to 32 MB whole (extras/text.py) and streams larger ones through the cache:
    # the two must give the same vocabulary, split and ids, newlines and 4-byte characters included.
    whole = read_text(text_file)
    cached = prepare(text_file, tmp_path / "cache", log=quiet, chunk_chars=7)
    assert whole.tokenizer.chars == cached.tokenizer.chars
    assert np.array_equal(whole.train, cached.train) and np.array_equal(whole.val, cached.val)
    assert (whole.n_chars, whole.n_train_chars) == (cached.n_chars, cached.n_train_chars)
    assert whole.train.dtype == cached.train.dtype == np.uint16 and not whole.from_cache
    # a checkpoint's vocabulary with one more character, at its end: every id of the text stays the same
    given = read_text(text_file, CharTokenizer(whole.tokenizer.chars + "\x00"))
    assert np.array_equal(given.train, cached.train) and given.tokenizer.vocab_size == whole.tokenizer.vocab_size + 1


@pytest.mark.parametrize("content, match", [
    (b"ok \xff\xfe more", r"^data file .*t\.txt is not UTF-8 text \(bad byte at offset 3\); pass a UTF-8 text "
                          r"file with --data$"),
    (b"", r"^data file .*t\.txt is empty; pass a text file with --data$"),
])
def test_reading_a_small_text_whole_refuses_what_the_cache_refuses(tmp_path, content, match):
    path = tmp_path / "t.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match=match):
        read_text(path)
    path.write_bytes(b"abc abc\nxyz \xc3\xa9\n")
    with pytest.raises(DataError, match=r"t\.txt: characters not in the vocabulary: 'x' 'y' 'z' '\xe9'$"):
        read_text(path, CharTokenizer("\n abc"))


def test_prepare_reads_the_file_in_bounded_blocks(text_file, tmp_path, monkeypatch):
    """However large the file, prepare() holds only a chunk of it: every read is bounded, none reads to the end."""
    reads = []

    class RecordingFile:
        def __init__(self, f):
            self.f = f

        def read(self, n=-1):
            reads.append(n)
            return self.f.read(n)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def __getattr__(self, name):
            return getattr(self.f, name)

    monkeypatch.setattr(dataset, "open", lambda *a, **k: RecordingFile(open(*a, **k)), raising=False)
    data = prepare(text_file, tmp_path / "cache", log=quiet, chunk_chars=7)
    assert data.n_chars > 1000
    assert all(n is not None and 0 < n <= 1 << 20 for n in reads)  # 1 MiB blocks for the sha256, 7 bytes for text
    assert reads.count(7) >= 2 * text_file.stat().st_size // 7  # the vocabulary pass and the encoding pass


def test_second_prepare_is_a_cache_hit_and_a_changed_file_a_miss(text_file, tmp_path):
    cache = tmp_path / "cache"
    first = prepare(text_file, cache, log=quiet)
    mtime = first.path.stat().st_mtime_ns
    lines = []
    second = prepare(text_file, cache, log=lines.append)
    assert second.from_cache and second.path == first.path and first.path.stat().st_mtime_ns == mtime
    assert lines == [f"tokens: reusing {first.path} ({first.n_chars:,} tokens, sha256 {dataset.file_sha256(text_file)[:12]})"]
    assert np.array_equal(second.train, first.train) and np.array_equal(second.val, first.val)
    assert second.tokenizer.chars == first.tokenizer.chars

    raw = text_file.read_bytes()
    text_file.write_bytes(raw[:-1] + b"!")  # one character changed, same length
    third = prepare(text_file, cache, log=quiet)
    assert not third.from_cache and third.path != first.path
    assert third.tokenizer.decode(third.val[-2:]) == "é!"


def test_a_given_tokenizer_reuses_the_char_cache(text_file, tmp_path):
    cache = tmp_path / "cache"
    derived = prepare(text_file, cache, log=quiet)
    same = prepare(text_file, cache, tokenizer=CharTokenizer(derived.tokenizer.chars), log=quiet)
    assert same.from_cache and same.path == derived.path

    bigger = CharTokenizer("".join(sorted(derived.tokenizer.chars + "XYZ")))  # a checkpoint's vocabulary, say
    other = prepare(text_file, cache, tokenizer=bigger, log=quiet)
    assert not other.from_cache and other.path != derived.path and "-tok" in other.path.name
    text = text_file.read_text(encoding="utf-8")
    assert np.array_equal(np.concatenate([other.train, other.val]), bigger.encode(text))
    assert prepare(text_file, cache, tokenizer=bigger, log=quiet).from_cache


def test_unknown_characters_with_a_given_tokenizer_are_named(tmp_path):
    path = write_raw(tmp_path / "t.txt", "abc abc\nxyz é\n", repeat=3)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"t\.txt: characters not in the vocabulary: 'x' 'y' 'z' 'é'$"):
        prepare(path, cache, tokenizer=CharTokenizer("\n abc"), log=quiet, chunk_chars=4)
    assert not list(cache.iterdir())  # nothing half-written left behind


def test_ids_are_uint32_for_a_huge_vocabulary(tmp_path):
    path = tmp_path / "many.txt"
    path.write_text("".join(chr(c) for c in range(0xE000, 0xE000 + 70_000)), encoding="utf-8")
    data = prepare(path, tmp_path / "cache", log=quiet)
    assert data.train.dtype == np.uint32 and data.tokenizer.vocab_size == 70_000
    assert data.train[:3].tolist() == [0, 1, 2] and data.val[-1] == 69_999


# ---------------------------------------------------------------------------------------------------------------
# byte-level BPE


@needs("tokenizers")
@pytest.mark.parametrize("chunk_chars", [7, CHUNK_CHARS])
def test_bpe_prepare_equals_encoding_each_split_whole(text_file, tmp_path, chunk_chars):
    text = text_file.read_text(encoding="utf-8")
    n = int(0.9 * len(text))
    data = prepare(text_file, tmp_path / "cache", kind="bpe", vocab_size=300, log=quiet, chunk_chars=chunk_chars)
    tok = data.tokenizer
    assert tok.kind == "bpe" and 256 < tok.vocab_size <= 300 and data.path.name.endswith("-bpe300.bin")
    assert tok.decode(data.train) == text[:n] and tok.decode(data.val) == text[n:]
    # chunks are cut only where BPE would not merge across the cut, so chunking changes nothing at all:
    assert tok.to_string() == BPETokenizer.train([text[:n]], 300).to_string()  # trained on the train split only
    assert np.array_equal(data.train, tok.encode(text[:n])) and np.array_equal(data.val, tok.encode(text[n:]))
    assert (data.n_chars, data.n_train_chars) == (len(text), n)
    assert len(data.train) + len(data.val) < len(text)  # merges make tokens longer than characters


@needs("tokenizers")
def test_bpe_cache_is_found_again(text_file, tmp_path):
    cache = tmp_path / "cache"
    first = prepare(text_file, cache, kind="bpe", vocab_size=300, log=quiet)
    assert prepare(text_file, cache, kind="bpe", vocab_size=300, log=quiet).from_cache
    given = prepare(text_file, cache, tokenizer=BPETokenizer(first.tokenizer.to_string()), log=quiet)  # e.g. --resume
    assert given.from_cache and given.path == first.path
    other = prepare(text_file, cache, kind="bpe", vocab_size=280, log=quiet)
    assert not other.from_cache and other.path != first.path


def test_prepare_rejects_a_bad_kind_or_vocab_size(text_file, tmp_path):
    with pytest.raises(ValueError, match="unknown tokenizer kind 'word'"):
        prepare(text_file, tmp_path, kind="word", log=quiet)
    with pytest.raises(ValueError, match="256 byte values"):
        prepare(text_file, tmp_path, kind="bpe", vocab_size=100, log=quiet)


# ---------------------------------------------------------------------------------------------------------------
# a damaged cache is rebuilt, never trusted


def truncate_bin(bin_path):
    bin_path.write_bytes(bin_path.read_bytes()[:-2])


def delete_bin(bin_path):
    bin_path.unlink()


def delete_meta(bin_path):  # a crash between writing the .bin and the .json
    bin_path.with_suffix(".json").unlink()


def garble_meta(bin_path):
    bin_path.with_suffix(".json").write_text('{"format": 1, "sha', encoding="utf-8")


def wrong_sha_in_meta(bin_path):
    meta = bin_path.with_suffix(".json")
    meta.write_text(meta.read_text(encoding="utf-8").replace('"sha256": "', '"sha256": "0'), encoding="utf-8")


def wrong_counts_in_meta(bin_path):
    meta = bin_path.with_suffix(".json")
    meta.write_text(meta.read_text(encoding="utf-8").replace('"n_train": ', '"n_train": 1'), encoding="utf-8")


@pytest.mark.parametrize("damage", [truncate_bin, delete_bin, delete_meta, garble_meta, wrong_sha_in_meta, wrong_counts_in_meta])
def test_a_damaged_cache_is_rebuilt(text_file, tmp_path, damage):
    cache = tmp_path / "cache"
    good = prepare(text_file, cache, log=quiet)
    train_ids, val_ids = np.array(good.train), np.array(good.val)
    del good  # let go of the memory map before the file changes under it
    damage(next(cache.glob("*.bin")))
    rebuilt = prepare(text_file, cache, log=quiet)
    assert not rebuilt.from_cache
    assert np.array_equal(rebuilt.train, train_ids) and np.array_equal(rebuilt.val, val_ids)
    assert prepare(text_file, cache, log=quiet).from_cache
    assert sorted(p.suffix for p in cache.iterdir()) == [".bin", ".json"]  # no temporary files left


def test_a_crash_while_encoding_leaves_no_cache_that_looks_complete(text_file, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    bin_path = prepare(text_file, cache, log=quiet).path
    wrong_counts_in_meta(bin_path)  # a cache that must be rebuilt...

    def crash(f, *args):
        f.write(b"\0\0")
        raise KeyboardInterrupt  # ...and the rebuild is interrupted half-way

    monkeypatch.setattr(dataset, "_write_char_ids", crash)
    with pytest.raises(KeyboardInterrupt):
        prepare(text_file, cache, log=quiet)
    assert [p.name for p in cache.iterdir()] == [bin_path.name]  # no .json (the sign of a complete cache), no temp file
    monkeypatch.undo()
    assert not prepare(text_file, cache, log=quiet).from_cache
    assert prepare(text_file, cache, log=quiet).from_cache


# ---------------------------------------------------------------------------------------------------------------
# unusable files


def test_unusable_files_are_one_line_data_errors(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("café\n".encode("latin-1"))
    cases = {tmp_path / "missing.txt": "does not exist; check the --data path",
             tmp_path: "is a directory; pass a text file with --data",
             empty: "is empty; pass a text file with --data",
             latin1: r"is not UTF-8 text \(bad byte at offset 3\); pass a UTF-8 text file with --data"}
    for path, message in cases.items():
        for kind in ["char", "bpe"]:
            with pytest.raises(DataError, match=message) as e:
                prepare(path, tmp_path / "cache", kind=kind, log=quiet)
            assert str(path) in str(e.value) and "\n" not in str(e.value)
    assert not list((tmp_path / "cache").glob("*.bin"))


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs POSIX permissions and a non-root user")
def test_an_unreadable_file_is_a_data_error(text_file, tmp_path):
    text_file.chmod(0)
    try:
        with pytest.raises(DataError, match="cannot read data file .*Permission denied"):
            prepare(text_file, tmp_path / "cache", log=quiet)
    finally:
        text_file.chmod(0o644)
