"""What every script's command line shares: one-line errors with an exit code, and output that any console
takes. Commands printed for the user to type are extras/commands.py's.

A mistake a user can make (a bad flag, a missing file) is a CLIError: the script prints it as one line on
stderr and exits with its code, never with a traceback.
"""

import argparse
import codecs
import sys
from collections.abc import Callable

# Exit codes: 2 for a problem with what the user passed (flags, files), 1 for a run that failed on its own,
# 130 for Ctrl-C (the shell's convention, 128 + SIGINT); a training run stopped by SIGTERM exits 143
# (128 + 15, extras/control.py).
EXIT_USAGE, EXIT_FAILED, EXIT_INTERRUPTED = 2, 1, 130


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
