"""generate.py and the command line end to end: train a tiny model, then sample from it."""

import subprocess
import sys

import pytest
import torch

import generate
from extras import engine
import train
from extras import run as run_module
from model import GPT
from conftest import ROOT, TINY_FLAGS, run_train


@pytest.fixture
def trained(small_text, tmp_path_factory):
    """A tiny model trained for a few steps; returns its out_dir."""
    out_dir = tmp_path_factory.mktemp("run")
    assert run_train(small_text, out_dir, "--max_iters", "6", "--eval_interval", "3") == 0
    return out_dir


def test_prints_exactly_the_requested_number_of_characters(trained, capsys):
    capsys.readouterr()
    assert generate.main(["--checkpoint", str(trained / "best.pt"), "--prompt", "To be", "--max_new_tokens", "57"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("To be") and out.endswith("\n")
    assert len(out) == len("To be") + 57 + 1


def test_same_seed_same_text_and_greedy_ignores_seed(trained, capsys):
    def sample(*flags):
        capsys.readouterr()
        assert generate.main(["--checkpoint", str(trained / "best.pt"), "--max_new_tokens", "80", *flags]) == 0
        return capsys.readouterr().out

    assert sample("--seed", "1") == sample("--seed", "1")
    assert sample("--seed", "1", "--temperature", "1.5") != sample("--seed", "2", "--temperature", "1.5")
    assert sample("--seed", "1", "--temperature", "0") == sample("--seed", "2", "--top_k", "1")


def test_several_samples_are_separated(trained, capsys):
    capsys.readouterr()
    assert generate.main(["--checkpoint", str(trained / "best.pt"), "--max_new_tokens", "10", "--num_samples", "3"]) == 0
    assert capsys.readouterr().out.count("-" * 40) == 2


def test_several_samples_are_one_batch_one_forward_pass_per_token(trained, capsys, monkeypatch):
    calls = []
    real_forward = GPT.forward
    monkeypatch.setattr(GPT, "forward", lambda self, idx, *a, **kw: calls.append(idx.shape) or real_forward(self, idx, *a, **kw))

    def sample(n, seed="1"):
        calls.clear()
        capsys.readouterr()
        assert generate.main(["--checkpoint", str(trained / "best.pt"), "--max_new_tokens", "20", "--num_samples", str(n),
                              "--prompt", "To", "--temperature", "1.2", "--seed", seed]) == 0
        return capsys.readouterr().out.split("\n" + "-" * 40 + "\n")

    texts = sample(4)
    assert len(calls) == 20 and all(shape[0] == 4 for shape in calls)  # the prompt, then one token at a time, for all 4
    assert len(texts) == 4 and all(t.startswith("To") and len(t.rstrip("\n")) == 2 + 20 for t in texts)
    assert len(set(texts)) == 4  # each row drew its own tokens
    assert sample(4) == texts  # the same seed gives the same texts
    assert sample(4, seed="2") != texts


@pytest.mark.parametrize("window", ["shift", "slide"])
def test_samples_longer_than_the_context_in_either_window(trained, capsys, window):
    capsys.readouterr()  # the tiny model's context is 32 characters
    assert generate.main(["--checkpoint", str(trained / "best.pt"), "--max_new_tokens", "100", "--window", window,
                          "--temperature", "0"]) == 0
    assert len(capsys.readouterr().out) == 1 + 100 + 1


def test_weights_dtype_is_named_and_bfloat16_samples(trained, capsys):
    outputs = {}
    for dtype in ("float32", "bfloat16"):
        capsys.readouterr()
        assert generate.main(["--checkpoint", str(trained / "best.pt"), "--max_new_tokens", "40", "--dtype", dtype]) == 0
        captured = capsys.readouterr()
        assert f"weights {dtype} (requested with --dtype)" in captured.err
        outputs[dtype] = captured.out
    assert len(outputs["bfloat16"]) == len(outputs["float32"]) == 1 + 40 + 1


@pytest.mark.parametrize("native, n_params, expected", [(True, 3_000_000, torch.bfloat16), (True, 400_000, torch.float32),
                                                         (False, 3_000_000, torch.float32)])
def test_cpu_weights_are_bfloat16_only_where_hardware_and_size_make_it_pay(monkeypatch, native, n_params, expected):
    monkeypatch.setattr(engine, "cpu_has_native_bfloat16", lambda: native)
    dtype, why = engine.pick_weights_dtype(torch.device("cpu"), "auto", n_params)
    assert dtype == expected and why
    assert engine.pick_weights_dtype(torch.device("cpu"), "float16", n_params)[0] == torch.float16  # asked for


@pytest.mark.slow
def test_scripts_end_to_end_as_subprocesses(small_text, tmp_path):
    """What a user types: python train.py ..., then python generate.py ..., in fresh interpreters."""
    out_dir = tmp_path / "out"
    run = subprocess.run([sys.executable, "train.py", "--data", str(small_text), "--out_dir", str(out_dir), *TINY_FLAGS,
                          "--max_iters", "20", "--eval_interval", "10", "--sample_chars", "40"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "step    20" in run.stdout and "sample from the final model" in run.stdout
    gen = subprocess.run([sys.executable, "generate.py", "--checkpoint", str(out_dir / "best.pt"),
                          "--max_new_tokens", "120", "--temperature", "0.8", "--top_k", "40"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert gen.returncode == 0, gen.stderr
    assert len(gen.stdout) == 1 + 120 + 1  # the newline prompt, the sample, a final newline
    vocab = torch.load(out_dir / "best.pt", weights_only=True)["tokenizer"]["data"]
    assert set(gen.stdout) <= set(vocab)
    bad = subprocess.run([sys.executable, "generate.py", "--checkpoint", str(tmp_path / "missing.pt")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and bad.stderr.count("\n") == 1


def test_the_flags_page_documents_every_flag():
    readme = (ROOT / "docs" / "flags.md").read_text(encoding="utf-8")
    train_flags = [f"--{f.name}" for f in (*train.fields(train.TrainConfig), *train.fields(run_module.RunControls), *run_module.MODEL_FLAGS)]
    generate_flags = [s for a in generate.build_parser()._actions for s in a.option_strings if s.startswith("--") and s != "--help"]
    missing = [flag for flag in train_flags + generate_flags if f"`{flag}" not in readme]
    assert not missing, f"docs/flags.md does not document {missing}"
