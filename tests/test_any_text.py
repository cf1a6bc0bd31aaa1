"""Beyond Shakespeare end to end: a text with hundreds of characters, the BPE tokenizer, the token cache."""

import random
import sys

import pytest
import torch

import bench
from extras import cli
import evaluate
import generate
from conftest import needs, read_metrics, run_train


@pytest.fixture
def many_scripts(tmp_path):
    """~30k characters drawn from 600 distinct ones: Latin, Greek, Cyrillic, CJK and emoji."""
    alphabet = ([chr(c) for c in range(0x41, 0x5B)] + [chr(c) for c in range(0x391, 0x3CA) if c != 0x3A2]
                + [chr(c) for c in range(0x410, 0x450)] + [chr(c) for c in range(0x4E00, 0x4E00 + 400)]
                + [chr(c) for c in range(0x1F600, 0x1F600 + 54)])
    rng = random.Random(0)
    words = ["".join(rng.choice(alphabet) for _ in range(rng.randint(2, 7))) for _ in range(2000)]
    text = "\n".join(" ".join(rng.choice(words) for _ in range(8)) for _ in range(900)) + "\n"
    text = "".join(alphabet) + "\n" + text  # every character occurs
    path = tmp_path / "scripts.txt"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_vocabulary_of_hundreds_of_characters_trains_and_samples(many_scripts, tmp_path, capsys):
    out_dir = tmp_path / "out"
    assert run_train(many_scripts, out_dir, "--max_iters", "4", "--eval_interval", "2", "--sample_chars", "30") == 0
    out = capsys.readouterr().out
    vocab_size = len(set(many_scripts.read_text(encoding="utf-8")))
    assert vocab_size > 256
    assert f"(char, vocab {vocab_size:,}," in out
    # 600+ characters x 32 dims outweigh a 1-layer, 32-wide model: the run says so.
    assert "warning: the token embedding holds" in out and "--tokenizer bpe" in out
    assert generate.main(["--checkpoint", str(out_dir / "best.pt"), "--prompt", "一丁", "--max_new_tokens", "10",
                          "--device", "cpu"]) == 0
    sample = capsys.readouterr().out
    assert sample.startswith("一丁") and len(sample) == 2 + 10 + 1  # prompt, 10 characters, newline
    assert set(sample) <= set(many_scripts.read_text(encoding="utf-8"))


def test_a_shakespeare_sized_vocabulary_gets_no_warning(small_text, tmp_path, capsys):
    assert run_train(small_text, tmp_path, "--max_iters", "2", "--eval_interval", "2") == 0
    assert "warning" not in capsys.readouterr().out


@needs("tokenizers")
def test_bpe_end_to_end_train_resume_generate_evaluate(many_scripts, tmp_path, capsys):
    out_dir = tmp_path / "out"
    flags = ["--tokenizer", "bpe", "--vocab_size", "300", "--eval_interval", "2"]
    assert run_train(many_scripts, out_dir, *flags, "--max_iters", "2") == 0
    out = capsys.readouterr().out
    last = torch.load(out_dir / "last.pt", weights_only=True)
    assert last["tokenizer"]["kind"] == "bpe" and last["tokenizer"]["data"].startswith("{")  # the tokenizer's JSON
    assert last["model_config"]["vocab_size"] == 300 and "(bpe, vocab 300," in out
    assert "bits/char" in out

    assert run_train(many_scripts, out_dir, "--resume", "--max_iters", "4") == 0
    assert [r["step"] for r in read_metrics(out_dir)] == [0, 2, 4]
    assert "tokens: reusing" in capsys.readouterr().out  # the second run read the cache

    # Any prompt encodes: byte-level BPE has no unknown characters ("Ж" and "ß" may never occur in the text).
    sample_flags = ["--checkpoint", str(out_dir / "last.pt"), "--prompt", "Ωμέγα Жß ", "--max_new_tokens", "12", "--device", "cpu"]
    assert generate.main(sample_flags) == 0
    sample = capsys.readouterr().out
    assert sample.startswith("Ωμέγα Жß ") and len(sample) > len("Ωμέγα Жß \n")
    assert generate.main(sample_flags) == 0 and capsys.readouterr().out == sample  # seeded: the same text again
    # Several samples as one batch, each row through its own stream decoder: greedy rows are the same tokens, so the
    # same text, whole characters and all (a decoder shared between rows would splice their bytes together).
    assert generate.main([*sample_flags, "--num_samples", "3", "--temperature", "0"]) == 0
    samples = capsys.readouterr().out.split("\n" + "-" * 40 + "\n")
    assert len(samples) == 3 and samples[0] == samples[1] == samples[2]
    assert samples[0].startswith("Ωμέγα Жß ")

    assert evaluate.main(["--checkpoint", str(out_dir / "last.pt"), "--device", "cpu"]) == 0
    report = capsys.readouterr().out
    assert "bits per character" in report and "tokens: reusing" in report  # evaluate.py reads the run's cache too


def test_resume_refuses_to_change_the_tokenizer(many_scripts, tmp_path, capsys):
    assert run_train(many_scripts, tmp_path, "--max_iters", "2", "--eval_interval", "2") == 0
    capsys.readouterr()
    assert run_train(many_scripts, tmp_path, "--resume", "--tokenizer", "bpe") == cli.EXIT_USAGE
    assert "--tokenizer bpe (checkpoint has char)" in capsys.readouterr().err


@needs("tokenizers")
def test_bits_per_character_are_the_loss_in_bits_for_char_and_fewer_tokens_for_bpe(small_text, tmp_path):
    assert run_train(small_text, tmp_path / "char", "--max_iters", "2", "--eval_interval", "2") == 0
    for row in read_metrics(tmp_path / "char"):
        assert row["val_bpc"] == pytest.approx(row["val_loss"] / 0.6931471805599453, rel=1e-4)
    assert run_train(small_text, tmp_path / "bpe", "--max_iters", "2", "--eval_interval", "2", "--tokenizer", "bpe",
                     "--vocab_size", "300") == 0
    row = read_metrics(tmp_path / "bpe")[0]
    # A BPE token spells more than one character, so a bit per token is less than a bit per character's worth.
    assert row["val_bpc"] < row["val_loss"] / 0.6931471805599453


@pytest.mark.slow
def test_a_few_hundred_megabytes_encode_in_flat_memory_and_start_fast_the_second_time(small_text, tmp_path):
    # The same generator and measurement as `bench.py --data_mb`: each prepare() in a fresh process, its peak
    # memory read from the kernel. Memory must not grow with the file: a 256 MB text may take no more than a
    # 16 MB one plus a little (holding the text in memory would cost over 256 MB as a str, 1 GB as code points).
    small, big = tmp_path / "16MB.txt", tmp_path / "256MB.txt"
    bench.make_big_text(small, 16, small_text)
    bench.make_big_text(big, 256, small_text)
    first_small = bench.time_encoding(small, tmp_path / "cache", "char", 512)
    first_big = bench.time_encoding(big, tmp_path / "cache", "char", 512)
    assert not first_big["from_cache"] and first_big["chars"] >= 250_000_000
    assert first_big["peak_mb"] < first_small["peak_mb"] + 32
    again = bench.time_encoding(big, tmp_path / "cache", "char", 512)
    assert again["from_cache"] and again["tokens"] == first_big["tokens"]
    assert again["seconds"] < first_big["seconds"] / 3  # only the file's sha256 is computed again


def test_char_runs_without_the_tokenizers_package_and_bpe_says_how_to_get_it(small_text, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # as if not installed: importing it raises ImportError
    assert run_train(small_text, tmp_path / "char", "--max_iters", "2", "--eval_interval", "2") == 0
    capsys.readouterr()
    assert run_train(small_text, tmp_path / "bpe", "--max_iters", "2", "--tokenizer", "bpe") == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "pip install tokenizers" in err
