"""Commands printed for the user to type (how to resume, how to train a first checkpoint), written so that
each runs exactly as printed: in this OS's shell, and behind `uv run` when uv started this process.
"""

import os
import shlex
import subprocess

# `uv run` sets this in the environment of what it starts: the user types `uv run python`, not `python`.
UV_RUN_MARK = "UV_RUN_RECURSION_DEPTH"


def shell_command(*words: str) -> str:
    """A command for the user to type, e.g. shell_command("python", "train.py"): behind `uv run` if uv started
    this process, each word quoted for this OS's shell (POSIX: shlex; Windows cmd and PowerShell: "...")."""
    words = ("uv", "run", *words) if UV_RUN_MARK in os.environ else words
    return subprocess.list2cmdline(words) if os.name == "nt" else shlex.join(words)
