"""A run's record, written by train.py (rank 0 only) into out_dir, and loss.png drawn from it.

- metrics.csv: one row per evaluation: step, train_loss, val_loss, val_bpc, lr, tokens_per_s, elapsed_s. The
  losses are measured on fixed samples of the train and val splits, so successive rows compare.
- train_log.csv: one row per optimizer step: step (steps taken, counting this one, as in metrics.csv), lr (the
  learning rate that step used) and train_loss: the mean loss of the training batches since the previous row
  that has one, filled in at every log point (--log_interval) and at every evaluation, empty in between
  (TrainLog says why not at every step).

bench.py reads metrics.csv to find when a run first reached a target loss. Runs made before train_log.csv
existed still plot, from metrics.csv alone.
"""

import csv
import importlib.util
import io
import math
import os
import time
from contextlib import suppress
from pathlib import Path

import torch

from extras.files import write_atomically
from extras.ranks import Ranks

METRICS_COLUMNS = ["step", "train_loss", "val_loss", "val_bpc", "lr", "tokens_per_s", "elapsed_s"]
TRAIN_LOG_COLUMNS = ["step", "lr", "train_loss"]


def restart_csv(path: Path, columns: list[str], keep_up_to: int | None) -> None:
    """Start a CSV of rows by step afresh, or on resume keep the rows up to the checkpoint's step (later ones
    were lost with the process, and the resumed run writes them again)."""
    rows = []
    if keep_up_to is not None and path.exists():
        with open(path, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) <= keep_up_to]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, restval="nan")  # a column older runs lacked
    writer.writeheader()
    writer.writerows(rows)
    # whole or not at all: a full disk here must not cost the rows a resumed run keeps
    write_atomically(path, lambda f: f.write(text.getvalue().encode("utf-8")))


def append_rows(path: Path, rows: list[list]) -> None:
    """Append rows to a CSV, all of them or none: a failed write (a full disk) cuts the file back to where it
    was, so a resumed run never reads half a row. The OSError it then raises names path."""
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    end = None
    try:
        end = path.stat().st_size
        with open(path, "ab") as f:
            f.write(text.getvalue().encode("utf-8"))
    except OSError as e:
        if end is not None:
            with suppress(OSError):
                os.truncate(path, end)  # shrinking a file needs no free space
        raise OSError(e.errno, e.strerror or str(e), str(path)) from e


def append_metrics(path: Path, row: list) -> None:
    """Append one evaluation's row to metrics.csv."""
    append_rows(path, [[row[0], *(f"{v:.6g}" for v in row[1:])]])


def read_metrics(path: Path) -> list[dict]:
    """The rows of metrics.csv (or train_log.csv) as dicts of floats; an empty cell reads as nan."""
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: float(v) if v else math.nan for k, v in row.items()} for row in csv.DictReader(f)]


def plot_metrics(metrics_path: Path, png_path: Path, tokens_per_step: int) -> None:
    """Draw loss.png from metrics.csv and, where the run has one, the train_log.csv beside it: the train loss
    at every log point, the evaluations' train and val loss, the best val marked, the learning rate of every
    step on the right and training tokens on the top axis. Without matplotlib (optional), nothing."""
    if importlib.util.find_spec("matplotlib") is None:
        return
    from matplotlib.figure import Figure  # the object API renders to PNG without choosing a GUI backend

    rows = read_metrics(metrics_path)
    log_path = metrics_path.with_name("train_log.csv")  # train.py writes the two side by side
    log = read_metrics(log_path) if log_path.exists() else []  # runs from before train_log.csv have none
    steps = [r["step"] for r in rows]
    fig = Figure(figsize=(9, 5), layout="constrained")
    ax = fig.add_subplot()
    if log:
        # Every log point: the loss of the batches the model trained on, a mean over --log_interval steps.
        # Noisier than the evaluations (fewer tokens, dropout on) but many more points, so the shape of the
        # curve shows.
        logged = [r for r in log if not math.isnan(r["train_loss"])]
        ax.plot([r["step"] for r in logged], [r["train_loss"] for r in logged], color="C0", linewidth=0.8,
                alpha=0.6, label="train loss, training batches (mean over each log interval)")
    # the evaluations are points; a run without the log has only them to draw a line
    joined = "none" if log else "-"
    ax.plot(steps, [r["val_loss"] for r in rows], color="C1", marker="o", linestyle=joined,
            label="val loss, evaluation")
    ax.plot(steps, [r["train_loss"] for r in rows], color="C0", marker="s", markersize=8, linestyle=joined,
            markerfacecolor="none", label="train loss, evaluation")  # hollow: the val point is often under it
    best = min(rows, key=lambda r: r["val_loss"])
    ax.plot([best["step"]], [best["val_loss"]], marker="*", markersize=14, linestyle="none", color="C3",
            label=f"best val {best['val_loss']:.4f} at step {best['step']:.0f} (best.pt)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per character)")
    ax.grid(alpha=0.3)
    tokens = ax.secondary_xaxis("top", functions=(lambda s: s * tokens_per_step / 1e6,
                                                  lambda t: t * 1e6 / tokens_per_step))
    tokens.set_xlabel("training tokens (millions)")
    lr_ax = ax.twinx()
    if log:
        lr_ax.plot([r["step"] for r in log], [r["lr"] for r in log], color="grey", linestyle=":",
                   label="learning rate (every step)")
    else:  # where the schedule stood at each evaluation: all an older run recorded
        lr_ax.plot(steps, [r["lr"] for r in rows], color="grey", linestyle=":",
                   label="learning rate (at evaluations)")
    lr_ax.set_ylabel("learning rate")
    lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    handles = ax.get_legend_handles_labels()[0] + lr_ax.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="upper right")
    write_atomically(png_path, lambda f: fig.savefig(f, format="png", dpi=100))


class TrainLog:
    """train_log.csv as a run writes it: the lr of every step, and the mean loss of the steps since the last
    write; and the training speed.

    The losses add up on the device, so no step waits for it; reading the sum (.item(), a wait) happens only
    in write(): at log points, and wherever last.pt is saved, so train_log.csv always holds every step last.pt
    has taken and a resumed run neither misses a row nor repeats one. Under torchrun the mean is over every
    rank.
    """

    def __init__(self, path: Path, device: torch.device, ranks: Ranks, keep_up_to: int | None = None):
        self.path, self.ranks = path, ranks
        self.pending: list[tuple[int, float]] = []  # (step, lr) not yet written
        self.loss_sum = torch.zeros((), device=device)  # their losses' sum, on the device
        # training speed since tokens_per_s(restart=True)
        self.tokens, self.seconds, self.last_rate = 0, 0.0, 0.0
        if ranks.is_main:
            restart_csv(path, TRAIN_LOG_COLUMNS, keep_up_to)

    def add(self, step: int, lr: float, loss: torch.Tensor, tokens: int, t0: float, write: bool = False):
        """Note one step: its number (steps taken, counting it), its lr, its loss (on the device), the tokens
        it trained on and time.perf_counter() at its start. With write, write() too and return its mean
        loss."""
        self.pending.append((step, lr))
        self.loss_sum += loss
        mean_loss = self.write() if write else None
        self.tokens += tokens
        self.seconds += time.perf_counter() - t0  # after write(): its wait for the device is part of the step
        return mean_loss

    def write(self) -> float | None:
        """Append the pending steps with their mean loss over every rank; return that loss (None if none)."""
        if not self.pending:
            return None
        mean_loss = (self.ranks.sum(self.loss_sum) / (len(self.pending) * self.ranks.world_size)).item()
        if self.ranks.is_main:  # a row per step: its lr; the mean loss on the last one
            last = self.pending[-1][0]
            append_rows(self.path, [[step, f"{lr:.6g}", f"{mean_loss:.6g}" if step == last else ""]
                                    for step, lr in self.pending])
        self.pending.clear()
        self.loss_sum.zero_()
        return mean_loss

    def tokens_per_s(self, restart: bool = False) -> float:
        """Training tokens per second of this rank since the last restart (the last value, if no step
        since)."""
        if self.seconds > 0:
            self.last_rate = self.tokens / self.seconds
        if restart:
            self.tokens, self.seconds = 0, 0.0
        return self.last_rate
