"""Runs you can trust: crash-safe checkpoints, exact resume after kill -9 or Ctrl-C, early stopping, the loss plot,
refusing unsafe or broken checkpoints, and a matrix of bad input that must fail cleanly without harming saved files."""

import pickle
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from extras import cli
import generate
import train
from conftest import ROOT, TINY_FLAGS, read_metrics, run_train


def snapshot(folder):
    """Every file under folder with its bytes, to prove nothing saved was touched.

    The token cache (folder/cache) is left out: it is not part of the run, and a run stopped by a bad flag may have
    encoded a new text into it. Its own safety is tested in test_dataset.py.
    """
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.relative_to(folder).parts[0] != "cache"}


@pytest.fixture(scope="module")
def _saved_run_template(tmp_path_factory):
    folder = tmp_path_factory.mktemp("template")
    data = folder / "text.txt"
    data.write_text("Now is the winter of our discontent\nMade glorious summer by this sun of York;\n" * 150, encoding="utf-8")
    assert run_train(data, folder / "run", "--max_iters", "4", "--eval_interval", "2") == 0
    return folder


@pytest.fixture
def saved_run(_saved_run_template, tmp_path):
    """A finished tiny run (out_dir with best.pt, last.pt, metrics.csv, loss.png) and its training text."""
    shutil.copytree(_saved_run_template, tmp_path, dirs_exist_ok=True)
    return tmp_path / "run", tmp_path / "text.txt"


def one_line_error(capsys) -> str:
    """stderr must hold exactly one error line (besides progress-bar redraws) and no traceback; returns it."""
    err = capsys.readouterr().err
    lines = [line for line in err.replace("\r", "\n").split("\n") if line.strip() and not line.startswith("train:")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


# ---------------------------------------------------------------------------------------------------------------
# checkpoints survive crashes


def test_a_crash_while_writing_leaves_the_previous_checkpoint(saved_run, monkeypatch):
    out_dir, _ = saved_run
    before = (out_dir / "last.pt").read_bytes()

    def dies_halfway(obj, f):
        f.write(b"PK\x03\x04 half a zip file")
        raise KeyboardInterrupt  # as if the process were stopped in the middle of the write

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        train.save_checkpoint(out_dir / "last.pt", {"step": 99})
    assert (out_dir / "last.pt").read_bytes() == before
    assert not list(out_dir.glob("*.tmp"))


RUN_FLAGS = ["--max_iters", "300", "--eval_interval", "50"]


def _subprocess_train(data, out_dir, *extra):
    # -u: unbuffered output, as a user would see it; 300 steps take a few seconds, long enough to stop midway.
    return subprocess.Popen([sys.executable, "-u", "train.py", "--data", str(data), "--out_dir", str(out_dir),
                             *TINY_FLAGS, *RUN_FLAGS, *extra],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_eval(out_dir, proc, step, timeout=240):
    """Block until metrics.csv has a row at or past step (the process is then mid-run)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "training finished before it could be stopped; make the run longer"
        if (out_dir / "metrics.csv").exists():
            rows = (out_dir / "metrics.csv").read_text(encoding="utf-8").splitlines()[1:]
            last = out_dir / "last.pt"  # written just after the metrics row: wait for it too
            if (rows and int(rows[-1].split(",")[0]) >= step and last.exists()
                    and last.stat().st_mtime_ns >= (out_dir / "metrics.csv").stat().st_mtime_ns):
                return
        time.sleep(0.02)
    raise AssertionError("no evaluation in time")


def _losses(rows):
    return [(r["step"], r["train_loss"], r["val_loss"]) for r in rows]


@pytest.fixture(scope="module")
def uninterrupted(_saved_run_template):
    """The per-evaluation losses of the whole run, never stopped."""
    out_dir = _saved_run_template / "uninterrupted"
    assert run_train(_saved_run_template / "text.txt", out_dir, *RUN_FLAGS) == 0
    return _losses(read_metrics(out_dir))


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_a_stopped_subprocess_resumes_to_the_same_losses(saved_run, uninterrupted, tmp_path, sig):
    _, data = saved_run
    out_dir = tmp_path / "stopped"
    proc = _subprocess_train(data, out_dir)
    _wait_for_eval(out_dir, proc, 100)
    time.sleep(0.2)  # land somewhere between evaluations
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    if sig == signal.SIGINT:
        assert proc.returncode == cli.EXIT_INTERRUPTED
        assert "python train.py --resume" in err
    else:
        assert proc.returncode == -signal.SIGKILL
    saved = torch.load(out_dir / "last.pt", weights_only=True)
    assert 100 <= saved["step"] < 300
    proc = _subprocess_train(data, out_dir, "--resume")
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    assert _losses(read_metrics(out_dir)) == uninterrupted


# ---------------------------------------------------------------------------------------------------------------
# runs that stop themselves


def test_a_non_finite_loss_stops_the_run_and_keeps_the_checkpoints(small_text, tmp_path, monkeypatch, capsys):
    assert run_train(small_text, tmp_path, "--max_iters", "4", "--eval_interval", "2") == 0
    before = snapshot(tmp_path)
    real_get_lr = train.get_lr
    monkeypatch.setattr(train, "get_lr", lambda step, cfg, elapsed=0.0: float("nan") if step == 5 else real_get_lr(step, cfg, elapsed))
    code = run_train(small_text, tmp_path, "--max_iters", "8", "--eval_interval", "4", "--log_interval", "1", "--resume")
    err = one_line_error(capsys)
    assert code == cli.EXIT_FAILED
    assert "non-finite at step 7" in err and "--learning_rate" in err  # the NaN lr poisons step 6's weights
    after = snapshot(tmp_path)
    assert after[train.Path("last.pt")] == before[train.Path("last.pt")]
    assert after[train.Path("best.pt")] == before[train.Path("best.pt")]


def test_patience_stops_after_evaluations_without_improvement(small_text, tmp_path, capsys):
    # A learning rate of 1e-9 cannot improve the model: after the first eval, val never gets better.
    code = run_train(small_text, tmp_path, "--max_iters", "40", "--eval_interval", "2", "--patience", "2",
                     "--learning_rate", "1e-9", "--min_lr", "0", "--dropout", "0.1")
    out = capsys.readouterr().out
    rows = read_metrics(tmp_path)
    assert code == 0
    assert "stopped early" in out and "--patience" in out
    best_index = min(range(len(rows)), key=lambda i: rows[i]["val_loss"])
    assert len(rows) == best_index + 1 + 2  # stopped exactly 2 evaluations after the best one
    assert rows[-1]["step"] < 40
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best["step"] == rows[best_index]["step"]


def test_out_of_memory_names_the_flags_to_lower(small_text, tmp_path, monkeypatch, capsys):
    def no_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(train.EvalSets, "losses", no_memory)
    code = run_train(small_text, tmp_path, "--max_iters", "2")
    err = one_line_error(capsys)
    assert code == cli.EXIT_FAILED
    assert "out of memory" in err and "--batch_size (now 8)" in err and "--block_size (now 32)" in err


# ---------------------------------------------------------------------------------------------------------------
# the loss plot


def test_loss_png_is_redrawn_at_every_evaluation(small_text, tmp_path, monkeypatch):
    drawn = []
    real_plot = train.plot_metrics
    monkeypatch.setattr(train, "plot_metrics", lambda *a: (real_plot(*a), drawn.append(len(read_metrics(tmp_path)))))
    assert run_train(small_text, tmp_path, "--max_iters", "6", "--eval_interval", "2") == 0
    assert drawn == [1, 2, 3, 4]  # after each of the evaluations at steps 0, 2, 4, 6, with every row so far
    png = (tmp_path / "loss.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


# ---------------------------------------------------------------------------------------------------------------
# unsafe and broken checkpoints


class _Payload:
    """Unpickling this calls open(path, "w"): proof that code ran. weights_only loading must refuse it."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_the_payload_really_runs_code_when_unpickled_unsafely(tmp_path):
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(_Payload(marker))).close()
    assert marker.exists()


@pytest.mark.parametrize("how", ["generate", "resume"])
def test_a_checkpoint_that_would_run_code_is_refused(saved_run, tmp_path, capsys, how):
    out_dir, data = saved_run
    marker = tmp_path / "pwned"
    checkpoint = torch.load(out_dir / "last.pt", weights_only=True)
    checkpoint["tokenizer"] = _Payload(marker)
    torch.save(checkpoint, out_dir / "last.pt")
    capsys.readouterr()
    if how == "generate":
        code = generate.main(["--checkpoint", str(out_dir / "last.pt")])
    else:
        code = run_train(data, out_dir, "--max_iters", "6", "--resume")
    err = one_line_error(capsys)
    assert code == cli.EXIT_USAGE
    assert "not a readable checkpoint" in err and "last.pt" in err
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["empty", "truncated", "text", "not-a-dict"])
def test_a_broken_last_pt_is_refused_by_resume_and_left_alone(saved_run, capsys, damage):
    out_dir, data = saved_run
    last = out_dir / "last.pt"
    if damage == "empty":
        last.write_bytes(b"")
    elif damage == "truncated":
        last.write_bytes(last.read_bytes()[:1000])
    elif damage == "text":
        last.write_text("hello", encoding="utf-8")
    else:
        torch.save([1, 2, 3], last)
    before = snapshot(out_dir)
    capsys.readouterr()
    assert run_train(data, out_dir, "--max_iters", "6", "--resume") == cli.EXIT_USAGE
    err = one_line_error(capsys)
    assert "last.pt" in err
    assert snapshot(out_dir) == before


# ---------------------------------------------------------------------------------------------------------------
# the bad-input matrix: one line on stderr naming the problem, a non-zero exit, and the saved run untouched


def _bad_data(tmp_path, kind):
    path = tmp_path / f"bad-{kind}"
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.write_text("", encoding="utf-8")
    elif kind == "binary":
        path.write_bytes(bytes(range(256)) * 40)
    elif kind == "short":
        path.write_text("too short for a 32-character window\n", encoding="utf-8")
    return path


TRAIN_ROWS = [
    (["--data", "{missing}"], "does not exist"),
    (["--data", "{directory}"], "is a directory"),
    (["--data", "{empty}"], "is empty"),
    (["--data", "{binary}"], "not UTF-8"),
    (["--data", "{short}"], "at least"),
    (["--learning_rate", "0"], "--learning_rate must be positive"),
    (["--learning_rate", "-0.1"], "--learning_rate must be positive"),
    (["--batch_size", "0"], "--batch_size must be positive"),
    (["--batch_size", "-1"], "--batch_size must be positive"),
    (["--block_size", "0"], "--block_size must be positive"),
    (["--block_size", "-5"], "--block_size must be positive"),
    (["--max_iters", "0"], "--max_iters must be positive"),
    (["--max_iters", "-3"], "--max_iters must be positive"),
    (["--dropout", "1.0"], "--dropout must be in [0, 1)"),
    (["--dropout", "-0.1"], "--dropout must be in [0, 1)"),
    (["--n_embd", "30", "--n_head", "4"], "divisible"),
    (["--patience", "-1"], "--patience must be >= 0"),
    (["--preset", "huge"], "invalid choice"),
    (["--device", "tpu"], "invalid choice"),
    (["--batch_size", "many"], "invalid int value"),
    (["--out_dir", "{file}/out"], "cannot write to --out_dir"),
    (["--grad_accum_steps", "0"], "--grad_accum_steps must be positive"),
    (["--grad_accum_steps", "3"], "does not split evenly"),
    (["--eval_tokens", "0"], "--eval_tokens must be positive"),
    (["--tokenizer", "bpe", "--vocab_size", "100"], "--vocab_size must be at least 256"),
    (["--vocab_size", "300"], "add --tokenizer bpe"),
    (["--tokenizer", "word"], "invalid choice"),
]


@pytest.mark.parametrize("flags, expected", TRAIN_ROWS, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_train_rejects_bad_input(saved_run, tmp_path, capsys, flags, expected):
    out_dir, data = saved_run
    a_file = tmp_path / "a-file"
    a_file.write_text("x", encoding="utf-8")
    paths = {"missing": tmp_path / "missing.txt", "file": a_file,
             **{kind: _bad_data(tmp_path, kind) for kind in ("directory", "empty", "binary", "short")}}
    flags = [f.format(**paths) for f in flags]
    before = snapshot(out_dir)
    capsys.readouterr()
    # --overwrite, so the only thing standing between these flags and the saved run is the check under test.
    code = train.main(["--data", str(data), "--out_dir", str(out_dir), *TINY_FLAGS, "--max_iters", "4", "--overwrite", *flags])
    err = one_line_error(capsys)
    assert code == cli.EXIT_USAGE
    assert expected in err
    assert snapshot(out_dir) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("script", ["train", "generate"])
def test_a_requested_device_that_is_missing(saved_run, capsys, script):
    out_dir, data = saved_run
    before = snapshot(out_dir)
    capsys.readouterr()
    if script == "train":
        code = run_train(data, out_dir, "--resume", "--device", "cuda")
    else:
        code = generate.main(["--checkpoint", str(out_dir / "best.pt"), "--device", "cuda"])
    assert code == cli.EXIT_USAGE
    assert "no CUDA GPU" in one_line_error(capsys)
    assert snapshot(out_dir) == before


GENERATE_ROWS = [
    (["--prompt", "Zebra ±"], "'Z' '±'"),
    (["--temperature", "-1"], "--temperature must be >= 0"),
    (["--top_k", "0"], "--top_k must be at least 1"),
    (["--block_size", "33"], "--block_size must be between 1 and 32"),
    (["--block_size", "0"], "--block_size must be between 1 and 32"),
    (["--max_new_tokens", "-1"], "--max_new_tokens"),
    (["--checkpoint", "{missing}"], "train one first"),
    (["--checkpoint", "{directory}"], "train one first"),
    (["--checkpoint", "{text}"], "is not a readable checkpoint"),
    (["--device", "tpu"], "invalid choice"),
    (["--prompt", ""], "--prompt must not be empty"),
    (["--prompt", "e" * 33], "the prompt is 33 tokens, longer than the model's context of 32"),
    (["--prompt", "e" * 9, "--block_size", "8"], "the prompt is 9 tokens, longer than the model's context of 8"),
    (["--window", "wrap"], "invalid choice"),
    (["--dtype", "int8"], "invalid choice"),
]


@pytest.mark.parametrize("flags, expected", GENERATE_ROWS, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_generate_rejects_bad_input(saved_run, tmp_path, capsys, flags, expected):
    out_dir, _ = saved_run
    paths = {"missing": tmp_path / "nowhere" / "best.pt", "directory": tmp_path, "text": tmp_path / "notes.pt"}
    paths["text"].write_text("not a checkpoint\n", encoding="utf-8")
    flags = [f.format(**paths) for f in flags]
    before = snapshot(out_dir)
    capsys.readouterr()
    code = generate.main(["--checkpoint", str(out_dir / "best.pt"), *flags])
    assert code == cli.EXIT_USAGE
    assert expected in one_line_error(capsys)
    assert snapshot(out_dir) == before


def test_generate_with_a_shorter_context(saved_run, capsys):
    out_dir, _ = saved_run
    capsys.readouterr()
    assert generate.main(["--checkpoint", str(out_dir / "best.pt"), "--block_size", "8", "--max_new_tokens", "30"]) == 0
    assert len(capsys.readouterr().out) == 1 + 30 + 1


def test_resume_lists_every_difference_in_model_shape(saved_run, capsys):
    out_dir, data = saved_run
    before = snapshot(out_dir)
    capsys.readouterr()
    assert run_train(data, out_dir, "--resume", "--n_embd", "64", "--n_layer", "3") == cli.EXIT_USAGE
    err = one_line_error(capsys)
    assert "--n_embd 64 (checkpoint has 32)" in err and "--n_layer 3 (checkpoint has 1)" in err
    assert snapshot(out_dir) == before
