"""Runs you can trust: crash-safe checkpoints, a full disk that loses nothing, exact resume after kill -9, Ctrl-C or
SIGTERM, early stopping, the loss plot, refusing unsafe or broken checkpoints, and a matrix of bad input that must
fail cleanly without harming saved files."""

import builtins
import csv
import errno
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from extras import cli
from extras import commands
import generate
import train
from conftest import (ROOT, TINY_FLAGS, needs, plain_python_env, read_metrics, run_train, signal_to_send,
                      wait_for_checkpoint)


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


# A constant learning rate (min_lr = learning_rate: no decay that depends on max_iters), so a run stopped on its way
# to 100000 steps and resumed with --max_iters N takes the same steps as a run of N steps that was never stopped:
# where it stops depends on the machine's speed, what it computes does not.
RUN_FLAGS = ["--eval_interval", "50", "--learning_rate", "1e-3", "--min_lr", "1e-3"]


def _subprocess_train(data, out_dir, log, *extra):
    """train.py in a fresh interpreter, as a user runs it (-u: unbuffered); stderr to the file log, so a long run
    never fills a pipe that nobody reads."""
    with open(log, "w", encoding="utf-8") as err:
        return subprocess.Popen([sys.executable, "-u", "train.py", "--data", str(data), "--out_dir", str(out_dir),
                                 *TINY_FLAGS, *RUN_FLAGS, *extra],
                                cwd=ROOT, env=plain_python_env(), stdout=subprocess.DEVNULL, stderr=err,
                                text=True)


def _losses(rows):
    return [(r["step"], r["train_loss"], r["val_loss"]) for r in rows]


@pytest.fixture(scope="module")
def uninterrupted(_saved_run_template):
    """losses(max_iters): the per-evaluation losses of a run of max_iters steps never stopped (each run once)."""
    runs = {}

    def losses(max_iters):
        if max_iters not in runs:
            out_dir = _saved_run_template / f"uninterrupted-{max_iters}"
            assert run_train(_saved_run_template / "text.txt", out_dir, *RUN_FLAGS, "--max_iters", str(max_iters)) == 0
            runs[max_iters] = _losses(read_metrics(out_dir))
        return runs[max_iters]

    return losses


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal_to_send("SIGKILL", "kill-9"), signal_to_send("SIGINT", "ctrl-c"),
                                 signal_to_send("SIGTERM", "sigterm")])
def test_a_stopped_subprocess_resumes_to_the_same_losses(saved_run, uninterrupted, tmp_path, sig):
    _, data = saved_run
    out_dir, log = tmp_path / "stopped", tmp_path / "stopped.log"
    proc = _subprocess_train(data, out_dir, log, "--max_iters", "100000")
    try:
        seen = wait_for_checkpoint(out_dir / "last.pt", 100, proc)  # the run is past step 100, far from its end
        proc.send_signal(sig)
        proc.wait(timeout=300)
    finally:
        proc.kill()  # only if a failed assertion left it running
    err = log.read_text(encoding="utf-8")
    saved = torch.load(out_dir / "last.pt", weights_only=True)["step"]
    if sig == getattr(signal, "SIGKILL", None):
        assert proc.returncode == -sig
        assert saved >= seen
    else:  # Ctrl-C and SIGTERM: the step in flight finishes and is saved, with the shell's code for the signal
        assert proc.returncode == (cli.EXIT_INTERRUPTED if sig == signal.SIGINT else 128 + sig), err
        assert (f"interrupted ({sig.name}) at step {saved}; saved {out_dir / 'last.pt'}. Continue with: python "
                f"train.py --resume --out_dir {out_dir}") in err
        assert saved > seen
    # Resumed to a few evaluations past the stop, it must match a run to the same step that was never stopped.
    max_iters = max(300, (saved // 50 + 2) * 50)
    proc = _subprocess_train(data, out_dir, log, "--resume", "--max_iters", str(max_iters))
    assert proc.wait(timeout=600) == 0, log.read_text(encoding="utf-8")[-3000:]
    assert _losses(read_metrics(out_dir)) == uninterrupted(max_iters)


# ---------------------------------------------------------------------------------------------------------------
# a full disk: one line naming the file, exit 1, every checkpoint still loadable, no temporary file left


class _FillingDisk:
    """A file on a disk with `room` bytes left: writes go through until it is full, then the one that does not
    fit puts down what fits and fails as the OS does (ENOSPC)."""

    def __init__(self, f, room):
        self._f, self._room = f, room

    def write(self, data):
        if len(data) > self._room:
            self._f.write(data[: self._room])
            self._room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):  # everything else (flush, fileno, close, name) is the real file's
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def fill_the_disk(monkeypatch, name, nth=1, room=0):
    """From the nth time a file called name (or its temporary name.PID.tmp) is opened to be written, it lies on a
    disk with room bytes left."""
    real_open, opened = builtins.open, []

    def open_on_a_filling_disk(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if (isinstance(file, (str, os.PathLike)) and set(mode) & set("wax")
                and re.sub(r"\.\d+\.tmp$", "", Path(file).name) == name):
            opened.append(file)
            if len(opened) >= nth:
                return _FillingDisk(f, room)
        return f

    monkeypatch.setattr(builtins, "open", open_on_a_filling_disk)


def test_torch_saves_failure_on_a_full_disk_becomes_an_oserror_naming_the_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    torch.save({"step": 1}, path)
    before = path.read_bytes()
    fill_the_disk(monkeypatch, "last.pt", room=2000)  # fails partway: torch.save raises "unexpected pos"
    with pytest.raises(OSError) as e:
        train.save_checkpoint(path, {"model": {"w": torch.zeros(10_000)}, "step": 2})
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(path)
    assert isinstance(e.value.__cause__, RuntimeError)  # what torch.save raised, kept for a traceback
    assert path.read_bytes() == before and not list(tmp_path.glob("*.tmp"))


# The saved run (4 steps) resumed to step 8: evaluations at 6 and 8 each append metrics.csv and write best.pt (val
# improves this early), last.pt and loss.png, in that order; train_log.csv is appended just before; both CSVs are
# first rewritten at the start (the rows up to last.pt's step).
DISK_FULL_FLAGS = ["--max_iters", "8", "--eval_interval", "2", "--resume"]
DISK_FULL_CASES = [  # (file, which of its writes fails, bytes that still fit)
    ("best.pt", 1, 2000), ("last.pt", 1, 2000), ("metrics.csv", 1, 10), ("metrics.csv", 2, 10),
    ("train_log.csv", 1, 10), ("train_log.csv", 2, 10), pytest.param("loss.png", 1, 2000, marks=needs("matplotlib"))]


@pytest.fixture(scope="module")
def resumed_with_room(_saved_run_template, tmp_path_factory):
    """The losses of the saved run resumed on a disk with room: what a run stopped by a full disk must end with."""
    out_dir = tmp_path_factory.mktemp("room") / "run"
    shutil.copytree(_saved_run_template / "run", out_dir)
    assert run_train(_saved_run_template / "text.txt", out_dir, *DISK_FULL_FLAGS) == 0
    return _losses(read_metrics(out_dir))


def _whole_rows(path):
    """Every row of a CSV has every column, and the file ends at a row's end: no half row."""
    text = path.read_bytes().decode("utf-8")  # as written: csv ends its rows with \r\n
    rows = list(csv.reader(text.splitlines()))
    return text.endswith("\r\n") and all(len(row) == len(rows[0]) for row in rows)


@pytest.mark.parametrize("name, nth, room", DISK_FULL_CASES)
def test_a_full_disk_stops_the_run_with_one_line_and_loses_nothing(saved_run, resumed_with_room, monkeypatch,
                                                                    capsys, name, nth, room):
    out_dir, data = saved_run
    before = snapshot(out_dir)
    monkeypatch.delenv(commands.UV_RUN_MARK, raising=False)  # as `python train.py`, whatever started the tests
    fill_the_disk(monkeypatch, name, nth, room)
    capsys.readouterr()
    code = run_train(data, out_dir, *DISK_FULL_FLAGS)
    err = one_line_error(capsys)
    assert code == cli.EXIT_FAILED
    assert err.startswith(f"error: could not write {out_dir / name} (No space left on device): free some space")
    assert f"then continue with: python train.py --resume --out_dir {out_dir}" in err
    assert not list(out_dir.rglob("*.tmp"))
    after = snapshot(out_dir)
    # The file that failed is as it was; so is every checkpoint save_evaluation had not reached yet. One written
    # before the failure holds the evaluation at step 6, whole.
    assert after[Path(name)] == before[Path(name)]
    written_before = {"last.pt": ["best.pt"], "loss.png": ["best.pt", "last.pt"]}.get(name, [])
    for checkpoint in ("best.pt", "last.pt"):
        step = torch.load(out_dir / checkpoint, weights_only=True)["step"]  # loadable
        assert after[Path(checkpoint)] == before[Path(checkpoint)] or (checkpoint in written_before and step == 6)
    assert _whole_rows(out_dir / "metrics.csv") and _whole_rows(out_dir / "train_log.csv")
    # With room again, --resume carries on as if the disk had never filled.
    monkeypatch.undo()
    assert run_train(data, out_dir, *DISK_FULL_FLAGS) == 0
    assert _losses(read_metrics(out_dir)) == resumed_with_room


def fail_writes_to(monkeypatch, name, error):
    """Every write to a file called name fails with error, as Windows fails them while another program holds
    the file open: replacing it (checkpoints, loss.png) and appending to it (the CSVs)."""
    real_replace, real_open = os.replace, builtins.open

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == name:
            raise error
        return real_replace(src, dst, *args, **kwargs)

    def open_(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and "a" in mode and Path(file).name == name:
            raise error
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(builtins, "open", open_)


LOCKED = PermissionError(errno.EACCES, "Permission denied")  # what Windows raises for a file held open


@pytest.mark.parametrize("name, error, fix", [
    ("last.pt", LOCKED, "another program may have it open"),
    ("metrics.csv", LOCKED, "another program may have it open"),
    ("train_log.csv", LOCKED, "another program may have it open"),
    pytest.param("loss.png", LOCKED, "another program may have it open", marks=needs("matplotlib")),
    ("last.pt", OSError(errno.EIO, "Input/output error"), "check that"),
])
def test_a_write_that_fails_for_another_reason_says_which(saved_run, monkeypatch, capsys, name, error, fix):
    out_dir, data = saved_run
    before = snapshot(out_dir)
    fail_writes_to(monkeypatch, name, error)
    capsys.readouterr()
    assert run_train(data, out_dir, *DISK_FULL_FLAGS) == cli.EXIT_FAILED
    err = one_line_error(capsys)
    assert err.startswith(f"error: could not write {out_dir / name} ({error.strerror}): {fix}")
    assert "free some space" not in err  # not a full disk
    assert f"then continue with: {commands.shell_command('python', 'train.py', '--resume', '--out_dir', str(out_dir))}" in err
    assert snapshot(out_dir)[Path(name)] == before[Path(name)] and not list(out_dir.rglob("*.tmp"))
    for checkpoint in ("best.pt", "last.pt"):
        assert torch.load(out_dir / checkpoint, weights_only=True)["step"] in (4, 6)  # intact, loadable
    monkeypatch.undo()  # the program closed the file: --resume goes on
    assert run_train(data, out_dir, *DISK_FULL_FLAGS) == 0


def test_a_full_disk_before_the_first_checkpoint_says_to_run_again(small_text, tmp_path, monkeypatch, capsys):
    fill_the_disk(monkeypatch, "best.pt", room=2000)  # the evaluation at step 0
    assert run_train(small_text, tmp_path, "--max_iters", "4") == cli.EXIT_FAILED
    err = one_line_error(capsys)
    assert f"could not write {tmp_path / 'best.pt'} (No space left on device)" in err
    assert "then run the same command again" in err and "--resume" not in err  # there is nothing to resume yet
    assert not (tmp_path / "best.pt").exists() and not list(tmp_path.rglob("*.tmp"))


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


@needs("matplotlib")
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
