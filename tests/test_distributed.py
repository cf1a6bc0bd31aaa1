"""Data parallel training: gradient accumulation, batch arithmetic, and two CPU ranks under torchrun (gloo)."""

import shlex
import subprocess
import sys

import pytest
import torch

from extras import cli
from extras import metrics
import train
from model import PRESETS
from extras import run as run_module
from conftest import (ROOT, TINY_FLAGS, kill_tree, needs, plain_python_env, read_metrics, run_train,
                      signal_to_send, wait_for_checkpoint)

# Two ranks (or micro-steps) add up gradients in another order than one pass over the batch does, and float addition
# is not associative, so exact equality is not promised. Seen here: equal to all 6 digits metrics.csv keeps. A step
# on a different batch (the control below) moves the losses by about 1e-2, so 1e-4 tells the two apart.
TOLERANCE = 1e-4


def _losses(out_dir):
    return [(r["step"], r["train_loss"], r["val_loss"]) for r in read_metrics(out_dir)]


def _close(a, b, tol=TOLERANCE):
    return len(a) == len(b) and all(sa == sb and abs(ta - tb) <= tol and abs(va - vb) <= tol
                                    for (sa, ta, va), (sb, tb, vb) in zip(a, b))


FLAGS = ["--max_iters", "6", "--eval_interval", "3", "--batch_size", "8", "--learning_rate", "3e-3", "--warmup_iters", "0"]


def test_gradient_accumulation_gives_the_same_steps(small_text, tmp_path):
    assert run_train(small_text, tmp_path / "whole", *FLAGS) == 0
    assert run_train(small_text, tmp_path / "accum", *FLAGS, "--grad_accum_steps", "4") == 0
    assert run_train(small_text, tmp_path / "half", *FLAGS, "--batch_size", "4") == 0  # control: a different batch
    whole, accum, half = (_losses(tmp_path / d) for d in ("whole", "accum", "half"))
    assert _close(whole, accum)
    assert not _close(whole, half)  # the tolerance is tight enough to tell a different batch apart


@pytest.mark.parametrize("batch_size, accum, world, ok", [(8, 1, 1, True), (8, 4, 1, True), (8, 2, 2, True),
                                                          (6, 4, 1, False), (8, 3, 1, False), (6, 1, 4, False)])
def test_batch_arithmetic_must_divide(batch_size, accum, world, ok):
    cfg = train.TrainConfig(batch_size=batch_size, grad_accum_steps=accum)
    model_cfg = PRESETS["tiny"]
    if ok:
        run_module.validate(cfg, model_cfg, world)
    else:
        with pytest.raises(cli.CLIError, match=f"use a multiple of {world * accum}"):
            run_module.validate(cfg, model_cfg, world)


TORCHRUN_ENV = plain_python_env(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def _torchrun_command(nproc, *args):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            str(ROOT / "train.py"), *args]


def _torchrun(nproc, *args, timeout=300):
    return subprocess.run(_torchrun_command(nproc, *args), cwd=ROOT, env=TORCHRUN_ENV, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
@needs("matplotlib")  # rank 0 alone writes loss.png
def test_two_cpu_ranks_under_torchrun_match_one_process(small_text, tmp_path):
    # One process, batch 8 in one go; two gloo ranks, each 2 micro-steps of 2 sequences (with no_sync) = batch 8.
    assert run_train(small_text, tmp_path / "one", *FLAGS) == 0
    proc = _torchrun(2, "--data", str(small_text), "--out_dir", str(tmp_path / "two"), *TINY_FLAGS, *FLAGS,
                     "--grad_accum_steps", "2", "--sample_chars", "20")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _close(_losses(tmp_path / "one"), _losses(tmp_path / "two"))
    # One set of outputs, written once: rank 0 alone writes, prints and samples.
    # (a small text is read whole, so there is no token cache either)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["best.pt", "last.pt", "loss.png",
                                                                     "metrics.csv", "train_log.csv"]
    assert [r["step"] for r in read_metrics(tmp_path / "two")] == [0, 3, 6]
    # The train log too, its losses averaged over both ranks (logged at step 3's evaluation and at the end).
    one_log, two_log = (metrics.read_metrics(tmp_path / d / "train_log.csv") for d in ("one", "two"))
    assert [r["step"] for r in two_log] == [1, 2, 3, 4, 5, 6]
    logged = [(a["train_loss"], b["train_loss"]) for a, b in zip(one_log, two_log) if a["step"] in (3, 6)]
    assert len(logged) == 2 and all(abs(a - b) <= TOLERANCE for a, b in logged)
    out = proc.stdout
    assert out.count("device: cpu") == 1 and "2 ranks (gloo)" in out
    assert out.count("sample from the final model") == 1
    assert "batch: 8 sequences x 32 tokens = 256 tokens per step (2 ranks x 2 micro-steps x 2 sequences)" in out


@pytest.mark.slow
def test_torchrun_rejects_a_batch_that_does_not_split_with_one_line(small_text, tmp_path):
    proc = _torchrun(2, "--data", str(small_text), "--out_dir", str(tmp_path / "out"), *TINY_FLAGS, *FLAGS,
                     "--batch_size", "9", timeout=180)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error")]
    assert errors == ["error: --batch_size 9 does not split evenly over 2 rank(s) x 1 micro-step(s); use a multiple "
                      "of 2, e.g. --batch_size 10"]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal_to_send("SIGTERM", "sigterm"), signal_to_send("SIGINT", "ctrl-c")])
def test_a_signal_to_torchrun_saves_last_pt_on_both_ranks_and_resumes(small_text, tmp_path, sig):
    # torchrun passes SIGTERM (a cluster's preemption) and SIGINT (Ctrl-C) on to its ranks; they agree on the step to
    # stop at. A constant learning rate, so the stopped run (max_iters far away) and a whole one take the same steps.
    flags = [*TINY_FLAGS, "--data", str(small_text), "--eval_interval", "4", "--batch_size", "8",
             "--learning_rate", "3e-3", "--min_lr", "3e-3", "--warmup_iters", "0"]
    out_dir, log = tmp_path / "stopped", tmp_path / "stopped.log"
    with open(log, "w", encoding="utf-8") as err:  # a file, not a pipe: nothing has to read it while it runs
        proc = subprocess.Popen(_torchrun_command(2, *flags, "--out_dir", str(out_dir), "--max_iters", "100000"),
                                cwd=ROOT, env=TORCHRUN_ENV, stdout=subprocess.DEVNULL, stderr=err)
    try:
        seen = wait_for_checkpoint(out_dir / "last.pt", 4, proc)
        proc.send_signal(sig)
        proc.wait(timeout=300)
    finally:
        kill_tree(proc.pid)  # only if a failed assertion left the launcher or a rank running
        proc.wait(timeout=60)
    err = log.read_text(encoding="utf-8")
    assert proc.returncode != 0  # torchrun's own code for "stopped by a signal"
    saved = torch.load(out_dir / "last.pt", weights_only=True)["step"]
    assert saved > seen, err[-3000:]  # the step in flight finished on both ranks and was saved
    # train.py as torchrun was given it: its full path here
    resume = shlex.join(["torchrun", "--standalone", "--nproc_per_node=2", str(ROOT / "train.py"), "--resume",
                         "--out_dir", str(out_dir)])
    assert (f"error: interrupted ({sig.name}) at step {saved}; saved {out_dir / 'last.pt'}. Continue with: "
            f"{resume}") in err, err[-3000:]
    assert f'File "{ROOT / "train.py"}"' not in err  # no rank ended in a traceback (torchrun itself prints one)
    max_iters = (saved // 4 + 2) * 4  # two evaluations past the stop
    resumed = _torchrun(2, *flags, "--out_dir", str(out_dir), "--resume", "--max_iters", str(max_iters))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming {out_dir / 'last.pt'} at step {saved}" in resumed.stdout
    assert run_train(small_text, tmp_path / "whole", *flags, "--max_iters", str(max_iters)) == 0
    assert [s for s, _, _ in _losses(out_dir)] == list(range(0, max_iters + 1, 4))
    assert _close(_losses(tmp_path / "whole"), _losses(out_dir))
