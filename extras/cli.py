"""What every script's command line shares: one-line errors with an exit code, and commands printed so that
they run as printed.

A mistake a user can make (a bad flag, a missing file) is a CLIError: the script prints it as one line on
stderr and exits with its code, never with a traceback.
"""

import argparse
import os
import shlex
import subprocess
import sys
from collections.abc import Callable

# Exit codes: 2 for a problem with what the user passed (flags, files), 1 for a run that failed on its own,
# 130 for Ctrl-C (the shell's convention, 128 + SIGINT); a training run stopped by SIGTERM exits 143
# (128 + 15, extras/control.py).
EXIT_USAGE, EXIT_FAILED, EXIT_INTERRUPTED = 2, 1, 130

# `uv run` sets this in the environment of what it starts: the user types `uv run python`, not `python`.
UV_RUN_MARK = "UV_RUN_RECURSION_DEPTH"


class CLIError(Exception):
    """A problem the user can fix; the script prints it as one line and exits with `code`."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


class FlagParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (a CLIError) instead of usage text plus a line."""

    def error(self, message):
        raise CLIError(f"{message} (see --help)")


def shell_command(*words: str) -> str:
    """A command for the user to type, e.g. shell_command("python", "train.py"): behind `uv run` if uv started
    this process, each word quoted for this OS's shell (POSIX: shlex; Windows cmd and PowerShell: "...")."""
    words = ("uv", "run", *words) if UV_RUN_MARK in os.environ else words
    return subprocess.list2cmdline(words) if os.name == "nt" else shlex.join(words)


def run_cli(body: Callable[[], int]) -> int:
    """Run a script's body; a CLIError becomes its one line on stderr and its exit code, Ctrl-C exit code
    130."""
    try:
        return body()
    except CLIError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
