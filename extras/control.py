"""What stops a run, kept out of the training loop's lines: the time budget, Ctrl-C and SIGTERM, and, under
torchrun, every rank agreeing on both once per step so that all of them stop at the same step with the same
learning rate.

SIGTERM is what Slurm, Kubernetes and a closing notebook send; it is treated like Ctrl-C: the step in flight
(and any evaluation due) finishes, last.pt is saved, and the run exits with the resume command and the exit
code of the signal (extras/failures.py).

On Windows nothing sends a run SIGTERM (Task Manager and closing the window end it outright): Ctrl-C in its
console is what stops it with last.pt saved (docs/exit-codes.md).
"""

import signal
import time

from extras.ranks import Ranks

STOP_SIGNALS = ("SIGINT", "SIGTERM")  # by name: where Python lacks one, a run stops on the other


class RunClock:
    """Seconds of training so far (over every resume), and whether a stop signal has arrived. Use as a
    context: the signal handlers are in place inside it and the previous ones come back after."""

    def __init__(self, time_budget: float, elapsed_before: float = 0.0, ranks: Ranks = Ranks()):
        self.time_budget, self.elapsed_before, self.ranks = time_budget, elapsed_before, ranks
        self.signals: list[int] = []  # the signals received, in order
        self.previous = {}
        self.t_start = time.perf_counter()

    def __enter__(self) -> "RunClock":
        for signum in (getattr(signal, name) for name in STOP_SIGNALS if hasattr(signal, name)):
            self.previous[signum] = signal.signal(signum, lambda s, frame: self.signals.append(s))
        self.t_start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def elapsed(self) -> float:
        """Seconds of training so far, as this process's own clock reads them."""
        return self.elapsed_before + time.perf_counter() - self.t_start

    def check(self) -> tuple[float, bool, bool]:
        """(elapsed seconds, out of time, stop requested), the same on every rank: the slowest clock and
        anyone's signal. One host-side all-reduce per step under torchrun, nothing otherwise."""
        elapsed, stop = self.ranks.agree([self.elapsed(), float(bool(self.signals))])
        return elapsed, self.time_budget > 0 and elapsed >= self.time_budget, bool(stop)
