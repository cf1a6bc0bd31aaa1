"""Writing files so that a crash, a kill or a full disk never leaves half of one: what checkpoints, the token
cache, the metrics files and the pictures are all written with; and checking, before a run, that it can write.
"""

import os
from pathlib import Path

import torch

from extras.cli import CLIError


def write_atomically(path: Path, write):
    """Call write(f) on a temporary file beside path, flush it to disk, then rename it over path in one step.

    A crash or kill at any moment leaves either the old file or the complete new one, never half of one. The
    temporary name carries the process id, so two processes preparing the same text never write into one file.
    Returns what write(f) returned. A failed write (a full disk, say) raises OSError naming path, even where
    the writer wrapped it in an error of its own: torch.save turns it into RuntimeError("... unexpected pos").
    """
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            result = write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)  # an exception (not a kill -9) can tidy up; path itself was never touched
        cause = e if isinstance(e, (OSError, RuntimeError)) else None  # anything else (Ctrl-C) stays itself
        while cause is not None and not isinstance(cause, OSError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        raise OSError(cause.errno, cause.strerror or str(cause), str(path)) from e
    return result


def save_checkpoint(path: Path, checkpoint: dict) -> None:
    """Write a checkpoint (a dict of tensors and plain data) to path atomically: a crash mid-write leaves the
    previous file intact. extras/checkpoint.py reads it back."""
    write_atomically(path, lambda f: torch.save(checkpoint, f))


def check_writable(out_dir: Path) -> None:
    """Fail before training, not at the first checkpoint, if out_dir cannot be written."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".write-test.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise CLIError(f"cannot write to --out_dir {out_dir} ({e.strerror or e}); "
                       "pick a folder you can write to") from None
