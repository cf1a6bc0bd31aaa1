"""Shared fixtures: a small training text, the real corpus when present, and a tiny-config training helper."""

import socket
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the scripts live at the top level, not in a package

from extras import dataset  # noqa: E402
from extras import metrics  # noqa: E402
import train  # noqa: E402

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
    """Tiny Shakespeare where train.py looks for it; .ci/run puts it there. Skipped when absent (offline clone)."""
    if not dataset.DEFAULT_DATA.exists():
        pytest.skip(f"Tiny Shakespeare not at {dataset.DEFAULT_DATA} (run `python train.py` once online to fetch it)")
    return dataset.DEFAULT_DATA


def run_train(data: Path, out_dir: Path, *extra: str) -> int:
    """Run train.main with the tiny flags on data into out_dir; returns the exit code."""
    return train.main(["--data", str(data), "--out_dir", str(out_dir), *TINY_FLAGS, *extra])


def read_metrics(out_dir: Path) -> list[dict]:
    """The rows of out_dir/metrics.csv as dicts of floats."""
    return metrics.read_metrics(out_dir / "metrics.csv")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def torchrun_of_one(monkeypatch):
    """The environment torchrun gives a single rank: train.main then joins a real (gloo) process group of one."""
    for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(free_port())}.items():
        monkeypatch.setenv(key, value)
    yield
    assert not dist.is_initialized()  # main() left the group
