"""How a training run ends when it does not finish, each way as one line with an exit code
(docs/exit-codes.md) and the command that goes on from where it stopped. Imported only when a run stops early:
Ctrl-C or SIGTERM, out of memory, a write into out_dir that failed.

A run stopped by a signal exits as the shell's convention has it, 128 + the signal's number: 130 for Ctrl-C
(SIGINT), 143 for SIGTERM, the code a scheduler would have seen had the signal killed the run, so it can tell
a stop it asked for from a failure (1).
"""

import errno
import signal
import sys
from pathlib import Path

import torch

from extras.cli import EXIT_FAILED, CLIError
from extras.commands import shell_command
from extras.files import save_checkpoint
from extras.ranks import Ranks


def resume_command(out_dir, ranks: Ranks) -> str:
    """The command that continues the run in out_dir from its last.pt, launched as this one was, to paste into
    this OS's shell as printed (extras/cli.py quotes it)."""
    launcher = (["torchrun", "--standalone", f"--nproc_per_node={ranks.world_size}"] if ranks.launched
                else ["python"])
    # train.py as the user typed it (quill/train.py from the folder above, say), or, when Python code called
    # main() (a test, a notebook), train.py
    script = sys.argv[0] if Path(sys.argv[0]).name == "train.py" else "train.py"
    return shell_command(*launcher, script, "--resume", "--out_dir", str(out_dir))


def stopped_by(clock) -> tuple[str, int]:
    """The first stop signal the run's clock received, by name ("SIGINT" for Ctrl-C; "a signal" on a rank that
    got none), and the exit code it gives: 128 + its number, 130 for Ctrl-C and 143 for SIGTERM."""
    if not clock.signals:
        return "a signal", 128 + signal.SIGINT
    return signal.Signals(clock.signals[0]).name, 128 + clock.signals[0]


def interrupted(clock, log, last: dict, ranks: Ranks) -> CLIError:
    """Ctrl-C or SIGTERM: save last.pt (the train log first, so it holds every step last.pt has taken) and
    return the error that says how to go on, with the shell's exit code for the signal (130, 143)."""
    out_dir = Path(last["train_config"]["out_dir"])
    log.write()
    if ranks.is_main:
        save_checkpoint(out_dir / "last.pt", last)
    name, code = stopped_by(clock)
    return CLIError(f"interrupted ({name}) at step {last['step']}; "
                    f"saved {out_dir / 'last.pt'}. Continue with: {resume_command(out_dir, ranks)}", code)


def explain(e: BaseException, run) -> None:
    """Raise the one line that says what to do when training failed with e by running out of memory or
    failing to write into out_dir; return for any other failure. The checkpoints saved so far are intact."""
    cfg, out_dir = run.cfg, Path(run.cfg.out_dir)
    # torch.cuda.OutOfMemoryError is a RuntimeError; so is MPS's
    if isinstance(e, (torch.cuda.OutOfMemoryError, MemoryError)) or (
            isinstance(e, RuntimeError) and "out of memory" in str(e).lower()):
        raise CLIError(f"ran out of memory on {run.precision.device}: lower --batch_size "
                       f"(now {cfg.batch_size}) or --block_size (now {run.model_cfg.block_size}), "
                       f"raise --grad_accum_steps (now {cfg.grad_accum_steps}; same batch, less memory), "
                       "or pick a smaller --preset. Checkpoints from earlier evaluations are intact",
                       EXIT_FAILED) from None
    # A write into out_dir failed: a full disk or quota; a file another program holds open (Windows will not
    # replace a metrics.csv open in a spreadsheet or a loss.png in a viewer, and antivirus can do the same);
    # a drive gone. Checkpoints and loss.png are replaced whole or not at all (extras/files.py) and a failed
    # CSV append is cut back, so what was saved is still there to resume from.
    if not isinstance(e, OSError):
        return
    if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        fix = f"free some space there (or copy {out_dir} to a disk with room and pass that --out_dir)"
    elif isinstance(e, PermissionError):
        fix = ("another program may have it open (a spreadsheet, an image viewer, antivirus): close it, "
               "or check that the folder is writable")
    else:
        fix = f"check that {out_dir} is still there and writable"
    then = (f"continue with: {resume_command(out_dir, run.ranks)}" if (out_dir / "last.pt").exists()
            else "run the same command again")
    raise CLIError(f"could not write {e.filename or out_dir} ({e.strerror or e}): {fix}, then {then}. "
                   "The checkpoints saved before are intact", EXIT_FAILED) from None
