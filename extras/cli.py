"""What every script's command line shares: one-line errors with an exit code, output that any console takes,
and commands printed so that they run as printed.

A mistake a user can make (a bad flag, a missing file) is a CLIError: the script prints it as one line on
stderr and exits with its code, never with a traceback.
"""

import argparse
import codecs
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

    def format_help(self) -> str:
        """The --help text. A flag made from a dataclass field (it has .field_of) is described by the comment
        beside the field: read only now, by extras/flag_help.py."""
        from extras.flag_help import describe_field_flags
        describe_field_flags(self._actions)
        return super().format_help()


def shell_command(*words: str) -> str:
    """A command for the user to type, e.g. shell_command("python", "train.py"): behind `uv run` if uv started
    this process, each word quoted for this OS's shell (POSIX: shlex; Windows cmd and PowerShell: "...")."""
    words = ("uv", "run", *words) if UV_RUN_MARK in os.environ else words
    return subprocess.list2cmdline(words) if os.name == "nt" else shlex.join(words)


def use_any_console() -> None:
    """Let print() write any character: into a file or pipe as UTF-8 (Windows hands those a cp1252 stream),
    on a console that cannot show a character as "?", never as a UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        if not hasattr(stream, "reconfigure") or codecs.lookup(stream.encoding).name == "utf-8":
            continue  # none (pythonw), a notebook's own stream, or one that takes every character already
        if stream.isatty():
            stream.reconfigure(errors="replace")
        else:
            stream.reconfigure(encoding="utf-8", errors="replace")


def run_cli(body: Callable[[], int]) -> int:
    """Run a script's body on streams that take any character; a CLIError becomes its one line on stderr and
    its exit code, Ctrl-C exit code 130."""
    use_any_console()
    try:
        return body()
    except CLIError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
