"""Checkpoints that earlier versions' own train.py wrote, one of each format the mains have saved
(tests/fixtures/old_checkpoints; its README names the commit and command behind each): today's generate.py
samples from every one, evaluate.py measures the loss the old run measured, and train.py --resume continues
it."""

import math
import re
import shutil
from pathlib import Path

import pytest
import torch

import evaluate
import generate
import train
from conftest import needs, read_metrics
from extras.checkpoint import load_checkpoint, model_from_checkpoint

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "old_checkpoints"
TEXT = FIXTURES / "text.txt"  # what every fixture was trained on; the path they saved ("text.txt") is gone
STEP = 4  # where every fixture's run stopped


def fixture_params(pattern: str) -> list:
    """The fixture files matching pattern, as test parameters; a BPE one needs the tokenizers package."""
    names = sorted(p.name for p in FIXTURES.glob(pattern))
    return [pytest.param(n, marks=needs("tokenizers")) if "bpe" in n else n for n in names]


LAST = fixture_params("*-last.pt")
EVERY = fixture_params("*.pt")
# Before c4d2d64 a run estimated its val loss on a few random batches (--eval_iters); since, on the whole
# split.
SAMPLED_VAL = ("135c01a", "f12dae4")


def test_there_is_a_fixture_for_every_format():
    commits = {p.name.split("-")[0] for p in FIXTURES.glob("*-last.pt")}
    assert commits >= {"135c01a", "f12dae4", "c4d2d64", "71c5f79", "717c85e", "aa3dd94", "56924ff"}
    assert sum(p.stat().st_size for p in FIXTURES.glob("*.pt")) < 500_000  # small enough to keep in git
    assert {torch.load(p, weights_only=True)["step"] for p in FIXTURES.glob("*.pt")} == {STEP}


@pytest.mark.parametrize("name", EVERY)
def test_generate_samples_from_an_old_checkpoint(name, capsys):
    flags = ["--checkpoint", str(FIXTURES / name), "--prompt", "First", "--max_new_tokens", "12",
             "--device", "cpu"]
    assert generate.main(flags) == 0
    text = capsys.readouterr().out
    assert text.startswith("First")
    if "bpe" not in name:  # a character model: twelve characters, each from its training text
        continuation = text[len("First"):-1]
        assert len(continuation) == 12 and set(continuation) <= set(TEXT.read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", EVERY)
def test_evaluate_measures_the_val_loss_the_old_run_measured(name, tmp_path, capsys):
    flags = ["--checkpoint", str(FIXTURES / name), "--data", str(TEXT), "--cache_dir", str(tmp_path),
             "--device", "cpu"]
    assert evaluate.main(flags) == 0
    loss = float(re.search(r"full val loss ([0-9.]+)", capsys.readouterr().out).group(1))
    saved = load_checkpoint(FIXTURES / name)["best_val_loss"]  # the run's last evaluation was its best
    # the same weights, tokenizer and split: the same loss (to the 4 decimals printed), or near a sampled one
    assert loss == pytest.approx(saved, abs=0.02 if name.startswith(SAMPLED_VAL) else 1e-4)


@pytest.mark.parametrize("name", LAST)
def test_old_parameters_come_in_todays_order(name):
    """An optimizer's state is saved by position, not by name: it lands on the right parameters only if
    today's model lists them in the order the old one did."""
    checkpoint = load_checkpoint(FIXTURES / name)
    names = [n for n, _ in model_from_checkpoint(checkpoint, torch.device("cpu")).named_parameters()]
    assert [key for key in checkpoint["model"] if key in names] == names


@pytest.mark.parametrize("name", LAST)
def test_resume_continues_an_old_checkpoint(name, tmp_path, capsys):
    shutil.copy(FIXTURES / name, tmp_path / "last.pt")
    old = load_checkpoint(tmp_path / "last.pt")
    flags = ["--resume", "--out_dir", str(tmp_path), "--max_iters", str(STEP + 2), "--data", str(TEXT),
             "--device", "cpu", "--sample_chars", "0"]
    assert train.main(flags) == 0
    assert f"resuming {tmp_path / 'last.pt'} at step {STEP} of {STEP + 2}" in capsys.readouterr().out
    resumed = load_checkpoint(tmp_path / "last.pt")
    assert resumed["step"] == STEP + 2 and [row["step"] for row in read_metrics(tmp_path)] == [STEP + 2]
    # AdamW went on from the saved moments: every parameter's state has counted all six steps, not two
    assert {float(s["step"]) for s in resumed["optimizer"]["state"].values()} == {STEP + 2.0}
    assert ("muon" in resumed) == ("muon" in old)
    assert old["model_config"].items() <= resumed["model_config"].items()  # the same model (+ new fields)
    assert math.isfinite(resumed["best_val_loss"]) and "tokenizer" in resumed  # today's format from now on


def test_resume_refuses_an_old_best_pt_in_one_line_that_says_what_to_do(tmp_path, capsys):
    shutil.copy(FIXTURES / "135c01a-first-best.pt", tmp_path / "last.pt")
    flags = ["--resume", "--out_dir", str(tmp_path), "--data", str(TEXT), "--device", "cpu"]
    assert train.main(flags) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no optimizer state" in err and "generate.py" in err

