"""Shared fixtures: a small training text, the real corpus when present, a tiny-config training helper, and
skips for what needs an optional package."""

import importlib.util
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the scripts live at the top level, not in a package

from extras import commands  # noqa: E402
from extras import dataset  # noqa: E402
from extras import metrics  # noqa: E402
import train  # noqa: E402

# What each optional package does here. A plain `pip install torch numpy tqdm` (Colab, say) may lack them; the
# tests of what needs one then skip and say how to get it (docs/compat.md runs the suite that way).
OPTIONAL = {"tokenizers": "byte-level BPE (--tokenizer bpe)",
            "matplotlib": "the pictures (loss.png, visualize.py)"}


def missing_reason(package: str) -> str:
    """Why a test that needs this optional package skips."""
    return f"{OPTIONAL[package]} needs {package}, which is not installed here (pip install {package})"


def needs(package: str):
    """A skip marker for a test that needs the optional package."""
    return pytest.mark.skipif(importlib.util.find_spec(package) is None, reason=missing_reason(package))


def require(package: str) -> None:
    """In a fixture: skip the tests that use it where the optional package is missing."""
    pytest.importorskip(package, reason=missing_reason(package))


# A model small enough that a few optimizer steps take well under a second on one CPU core.
TINY_FLAGS = ["--preset", "tiny", "--n_layer", "1", "--n_head", "2", "--n_embd", "32", "--block_size", "32",
              "--batch_size", "8", "--sample_chars", "0", "--device", "cpu"]


@pytest.fixture
def small_text(tmp_path) -> Path:
    """A ~20k-character UTF-8 text with a 40-odd character vocabulary."""
    lines = ["To be, or not to be: that is the question.", "All the world's a stage,",
             "And all the men and women merely players;", "Now is the winter of our discontent!"]
    path = tmp_path / "small.txt"
    path.write_text("\n".join(lines[i % len(lines)] for i in range(500)) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def corpus_path() -> Path:
    """Tiny Shakespeare where train.py looks for it (require_corpus)."""
    return require_corpus()


def require_corpus() -> Path:
    """Tiny Shakespeare where train.py looks for it; .ci/run puts it there. Skips the test when absent (an
    offline clone), unless QUILL_REQUIRE_CORPUS=1 (.ci/run sets it) makes that a failure: CI must run it."""
    if not dataset.DEFAULT_DATA.exists():
        reason = (f"Tiny Shakespeare not at {dataset.DEFAULT_DATA} (run `python train.py` once online to "
                  "fetch it)")
        if os.environ.get("QUILL_REQUIRE_CORPUS") == "1":
            pytest.fail(f"{reason}, and QUILL_REQUIRE_CORPUS=1 says this machine must run the corpus tests")
        pytest.skip(reason)
    return dataset.DEFAULT_DATA


def signal_to_send(name: str, test_id: str):
    """The signal a test sends a child process, as a pytest.param: skipped, with the reason, where there is no
    such signal (Windows has no SIGKILL) or no way to send one (Windows' send_signal kills or raises)."""
    sig = getattr(signal, name, None)
    why = (f"this Python has no signal.{name}" if sig is None
           else f"Windows cannot send {name} to a child process" if os.name == "nt" else None)
    return pytest.param(sig, id=test_id, marks=[pytest.mark.skip(reason=why)] if why else [])


def plain_python_env(**extra: str) -> dict:
    """os.environ as a plain `python` start sees it, without `uv run`'s mark: commands print as `python`."""
    return {**{k: v for k, v in os.environ.items() if k != commands.UV_RUN_MARK}, **extra}


def run_train(data: Path, out_dir: Path, *extra: str) -> int:
    """Run train.main with the tiny flags on data into out_dir; returns the exit code."""
    return train.main(["--data", str(data), "--out_dir", str(out_dir), *TINY_FLAGS, *extra])


def read_metrics(out_dir: Path) -> list[dict]:
    """The rows of out_dir/metrics.csv as dicts of floats."""
    return metrics.read_metrics(out_dir / "metrics.csv")


@pytest.fixture
def torchrun_of_one(monkeypatch):
    """The environment torchrun gives a single rank: train.main then joins a real (gloo) process group of one.
    MASTER_PORT 0: rank 0's store binds a port the OS picks as it binds (no other rank has to find it), so no
    other process can take it first, as it could a port found free, released and then bound again."""
    for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": "0"}.items():
        monkeypatch.setenv(key, value)
    yield
    assert not dist.is_initialized()  # main() left the group


def wait_for_checkpoint(path: Path, step: int, proc, timeout: float = 600) -> int:
    """Block until the checkpoint at path holds `step` steps or more while proc still runs; returns its step.

    It waits on the file, not on the clock: the deadline only ends a run that hangs, so a slow machine just waits
    longer.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before a checkpoint at step {step}"
        try:
            saved = torch.load(path, weights_only=True, map_location="cpu")["step"]
        except (OSError, RuntimeError, EOFError):  # not there yet (a checkpoint is renamed into place whole)
            saved = -1
        if saved >= step:
            return saved
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint at step {step} in {path} after {timeout:.0f}s")


def kill_tree(pid: int) -> None:
    """kill -9 a process and everything below it (torchrun starts its ranks in sessions of their own)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    children.setdefault(int(f.read().rsplit(")", 1)[1].split()[1]), []).append(int(entry))
            except OSError:
                continue
    found, todo = [pid], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    for each in found:
        try:
            os.kill(each, signal.SIGKILL)
        except ProcessLookupError:
            pass
