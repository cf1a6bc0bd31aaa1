"""What every script's command line shares: one-line errors with an exit code, and flags made from dataclass
fields.

A mistake a user can make (a bad flag, a missing file) is a CLIError: the script prints it as one line on
stderr and exits with its code, never with a traceback.
"""

import argparse
import sys
import types
import typing
from collections.abc import Callable

# Exit codes: 2 for a problem with what the user passed (flags, files), 1 for a run that failed on its own,
# 130 for Ctrl-C (the shell's convention, 128 + SIGINT); a training run stopped by SIGTERM exits 143 (128 + 15,
# extras/control.py).
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


def run_cli(body: Callable[[], int]) -> int:
    """Run a script's body; a CLIError becomes its one line on stderr and its exit code, Ctrl-C exit code 130."""
    try:
        return body()
    except CLIError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _flag_type(annotation):
    """The type a flag parses to: int for `int | None`, and so on."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def add_dataclass_flags(parser: argparse.ArgumentParser, flag_fields, helps: dict, choices: dict,
                        default_text) -> None:
    """Add one --name flag per dataclass field, its help from helps[name] and default_text(field), and its
    choices from choices[name] if there. Unset flags stay out of the namespace, so we know what was given."""
    for f in flag_fields:
        kind = _flag_type(f.type)
        kwargs = dict(default=argparse.SUPPRESS, help=f"{helps[f.name]} ({default_text(f)})")
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = kind
            kwargs["metavar"] = kind.__name__.upper()
        if f.name in choices:
            kwargs["choices"] = choices[f.name]
            kwargs.pop("metavar", None)
        parser.add_argument(f"--{f.name}", **kwargs)
