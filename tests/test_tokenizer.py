"""tokenizer.py: exact round trips, a sorted vocabulary, and errors that name unknown characters."""

import pytest

from tokenizer import CharTokenizer


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
