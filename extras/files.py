"""Writing files so that a crash, a kill or a full disk never leaves half of one: what checkpoints, the token
cache, the metrics files and the pictures are all written with.
"""

import os
from pathlib import Path


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
