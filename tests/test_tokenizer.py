"""tokenizer.py: exact round trips, a sorted vocabulary, errors that name unknown characters, byte-level BPE, and
tokenizers saved as plain strings."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, needs, require
from extras import dataset
from extras.bpe import BPETokenizer
from extras.streaming import StreamDecoder
from extras.checkpoint import tokenizer_from_checkpoint, tokenizer_from_dict
from extras.tokenizer import CharTokenizer, tokenizer_to_dict


def test_vocab_is_the_sorted_set_of_characters():
    tok = CharTokenizer.from_text("hello world")
    assert tok.chars == " dehlorw"
    assert tok.vocab_size == 8
    assert tok.encode("hello").tolist() == [3, 2, 4, 4, 5]


def test_round_trip_on_the_whole_corpus(corpus_path):
    text = corpus_path.read_text(encoding="utf-8")
    tok = CharTokenizer.from_text(text)
    assert tok.vocab_size == 65
    ids = tok.encode(text)
    assert len(ids) == len(text) == 1_115_394
    assert tok.decode(ids) == text


def test_round_trip_beyond_ascii():
    text = "naïve café — 東京 🙂\n"
    tok = CharTokenizer.from_text(text)
    assert tok.decode(tok.encode(text)) == text


def test_unknown_characters_are_named():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=r"'x' 'é'"):
        tok.encode("abxcé")
    assert tok.unknown("abxcé") == ["x", "é"]


def test_rebuilds_from_its_plain_string():
    tok = CharTokenizer.from_text("some text\n")
    again = CharTokenizer(tok.chars)
    assert again.encode("text").tolist() == tok.encode("text").tolist()


# ---------------------------------------------------------------------------------------------------------------
# character level: a vectorised encode, compact ids


def mixed_scripts(n: int = 5000, seed: int = 0) -> str:
    """A seeded jumble of Latin, Greek, Cyrillic, CJK and emoji: ~500 distinct characters, many of them 2-4 UTF-8 bytes."""
    alphabet = [chr(c) for lo, hi in [(0x20, 0x7E), (0xC0, 0xFF), (0x391, 0x3C9), (0x410, 0x44F), (0x4E00, 0x4E80),
                                      (0x1F600, 0x1F640)] for c in range(lo, hi + 1)] + ["\n", "\t"]
    rng = np.random.default_rng(seed)
    return "".join(alphabet[i] for i in rng.integers(len(alphabet), size=n))


def test_vectorised_encode_equals_the_per_character_mapping():
    text = mixed_scripts()
    tok = CharTokenizer.from_text(text)
    assert tok.vocab_size > 256  # ids that do not fit in a byte
    ids = tok.encode(text)
    assert ids.dtype == np.uint16
    assert ids.tolist() == [tok.stoi[c] for c in text]
    assert tok.decode(ids) == text
    assert tok.encode("").tolist() == [] and tok.decode([]) == ""


def test_ids_are_uint32_beyond_65536_characters():
    chars = "".join(chr(c) for c in range(0xE000, 0xE000 + 70_000))  # above the surrogates 0xD800-0xDFFF
    tok = CharTokenizer(chars)
    ids = tok.encode(chars[-3:] + chars[:2])
    assert tok.dtype == np.uint32 and ids.dtype == np.uint32
    assert ids.tolist() == [69_997, 69_998, 69_999, 0, 1]
    assert tok.decode(ids) == chars[-3:] + chars[:2]


def test_from_mask_builds_the_sorted_vocabulary():
    seen = np.zeros(0x110000, dtype=bool)
    seen[[ord("b"), 0x1F642, ord("a"), ord("\n")]] = True
    assert dataset.char_tokenizer_from_mask(seen).chars == "\nab🙂"


def test_unknown_characters_are_named_once_each():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=r"vocabulary: 'x' 'é' '🙂'$"):
        tok.encode("x🙂abxxcéx")


def test_decode_rejects_ids_outside_the_vocabulary():
    tok = CharTokenizer("ab")
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        tok.decode([0, 2])


# ---------------------------------------------------------------------------------------------------------------
# byte-level BPE

SAMPLE = ("To be, or not to be: that is the question.\n"
          "Το είναι ή να μην είναι. Быть или не быть. 生存还是毁灭 🙂\n")


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    require("tokenizers")
    return BPETokenizer.train([SAMPLE * 20], vocab_size=320)


def test_bpe_round_trips_any_text(bpe):
    unseen = "∮ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \x00\t\r\n 🦜🦜 Ωmega naïve  spaces  "
    for text in [SAMPLE, unseen, mixed_scripts(500), ""]:
        ids = bpe.encode(text)
        assert ids.dtype == np.uint16
        assert bpe.decode(ids) == text
        assert bpe.unknown(text) == []
    assert len(bpe.encode(SAMPLE)) < len(SAMPLE.encode("utf-8"))  # merges learned on SAMPLE make it shorter than its bytes


def test_bpe_encode_many_concatenates_in_order(bpe):
    texts = [SAMPLE, "", "🦜 x", "to be\n"]
    assert bpe.encode_many(texts).tolist() == [i for t in texts for i in bpe.encode(t).tolist()]
    assert bpe.encode_many([]).tolist() == []


def test_bpe_decode_rejects_ids_outside_the_vocabulary(bpe):
    with pytest.raises(ValueError, match=rf"\[0, {bpe.vocab_size}\)"):
        bpe.decode([5, bpe.vocab_size])


def test_bpe_training_is_deterministic(bpe):
    again = BPETokenizer.train([SAMPLE * 20], vocab_size=320)
    assert again.to_string() == bpe.to_string()
    # in a fresh process too (Rust hash maps are seeded per process)
    script = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from extras.bpe import BPETokenizer; " \
             f"sys.stdout.write(BPETokenizer.train([{SAMPLE!r} * 20], vocab_size=320).to_string())"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, encoding="utf-8", check=True).stdout
    assert out == bpe.to_string()
    assert BPETokenizer.train([SAMPLE * 19 + "zzzz " * 50], vocab_size=320).to_string() != bpe.to_string()


def test_bpe_vocab_size_is_respected(bpe):
    assert 256 < bpe.vocab_size <= 320
    assert BPETokenizer.train([SAMPLE], vocab_size=256).vocab_size == 256
    assert 256 <= BPETokenizer.train(["ab"], vocab_size=1000).vocab_size <= 1000  # little to merge: stops early
    with pytest.raises(ValueError, match="256 byte values"):
        BPETokenizer.train([SAMPLE], vocab_size=255)


@needs("tokenizers")
def test_bpe_rejects_what_is_not_a_tokenizer():
    with pytest.raises(ValueError, match="not a valid tokenizer JSON"):
        BPETokenizer("{not json")
    with pytest.raises(ValueError, match="not a valid tokenizer JSON"):
        BPETokenizer('{"model": 1}')


# ---------------------------------------------------------------------------------------------------------------
# saving in a checkpoint


def test_dict_round_trips_for_both_kinds(bpe):
    for tok in [CharTokenizer.from_text(SAMPLE), bpe]:
        d = tokenizer_to_dict(tok)
        assert set(d) == {"kind", "data"} and all(type(v) is str for v in d.values())  # plain data for weights_only
        again = tokenizer_from_dict(json.loads(json.dumps(d)))
        assert type(again) is type(tok) and again.to_string() == tok.to_string()
        assert again.encode(SAMPLE).tolist() == tok.encode(SAMPLE).tolist()


@pytest.mark.parametrize("bad, why", [
    (None, "must be a dict with a string 'data'"), ("abc", "must be a dict with a string 'data'"),
    ({"kind": "wordpiece", "data": "abc"}, "unknown tokenizer kind 'wordpiece'"),
    ({"kind": "char"}, "must be a dict with a string 'data'"),
    ({"kind": "char", "data": ""}, "vocabulary is empty"),
    ({"kind": "char", "data": "aa"}, "must be distinct"),
    pytest.param({"kind": "bpe", "data": "[]"}, "not a valid tokenizer JSON", marks=needs("tokenizers"))])
def test_from_dict_rejects_bad_data(bad, why):
    with pytest.raises(ValueError, match=why):
        tokenizer_from_dict(bad)


def test_from_checkpoint_reads_the_legacy_vocab(bpe):
    assert tokenizer_from_checkpoint({"vocab": "\n abc", "step": 3}).chars == "\n abc"
    assert tokenizer_from_checkpoint({"tokenizer": tokenizer_to_dict(bpe)}).to_string() == bpe.to_string()
    with pytest.raises(ValueError, match="no tokenizer"):
        tokenizer_from_checkpoint({"step": 3})


# ---------------------------------------------------------------------------------------------------------------
# streaming generated text


def test_stream_decoder_never_prints_half_a_character(bpe):
    text = "生存 🦜🙂 naïve Быть"
    ids = bpe.encode(text).tolist()
    assert any("\ufffd" in bpe.decode([i]) for i in ids)  # some tokens really are partial characters
    stream = StreamDecoder(bpe)
    pieces = [stream.push([i]) for i in ids] + [stream.flush()]
    assert not any("\ufffd" in piece for piece in pieces)
    assert "".join(pieces) == bpe.decode(ids) == text


def test_stream_decoder_flushes_what_never_completed(bpe):
    parrot = bpe.encode("🦜").tolist()
    assert len(parrot) > 1  # unseen in training: one token per byte
    stream = StreamDecoder(bpe)
    assert stream.push(bpe.encode("hi ").tolist() + parrot[:1]) == "hi "
    assert stream.flush() == "\ufffd"
    assert stream.push(bpe.encode("ok").tolist()) == "ok"


def test_stream_decoder_for_characters():
    tok = CharTokenizer.from_text("hello")
    stream = StreamDecoder(tok)
    assert [stream.push([i]) for i in tok.encode("hello").tolist()] == list("hello")
    assert stream.flush() == ""
