"""A run's record: metrics.csv, one row per evaluation, and loss.png drawn from it.

train.py writes both (rank 0 only); bench.py reads metrics.csv to find when a run first reached a target loss.
"""

import csv
from pathlib import Path

from dataset import write_atomically

METRICS_COLUMNS = ["step", "train_loss", "val_loss", "val_bpc", "lr", "tokens_per_s", "elapsed_s"]


def start_metrics(path: Path, keep_up_to: int | None) -> None:
    """Start metrics.csv afresh, or on resume keep the rows up to the checkpoint's step (later ones were lost)."""
    rows = []
    if keep_up_to is not None and path.exists():
        with open(path, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) <= keep_up_to]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=METRICS_COLUMNS, restval="nan")  # a column older runs lacked
        writer.writeheader()
        writer.writerows(rows)


def append_metrics(path: Path, row: list) -> None:
    """Append one evaluation's row to metrics.csv."""
    with open(path, "a", newline="", encoding="utf-8") as f:
        csv.writer(f).writerow([row[0], *(f"{v:.6g}" for v in row[1:])])


def read_metrics(path: Path) -> list[dict]:
    """The rows of metrics.csv as dicts of floats."""
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def plot_metrics(metrics_path: Path, png_path: Path, tokens_per_step: int) -> None:
    """Draw loss.png from metrics.csv: train and val loss per step (tokens on top), best val marked, lr on the right."""
    from matplotlib.figure import Figure  # the object API renders to PNG without choosing a GUI backend

    rows = read_metrics(metrics_path)
    steps = [r["step"] for r in rows]
    fig = Figure(figsize=(9, 5), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(steps, [r["train_loss"] for r in rows], marker=".", label="train loss")
    ax.plot(steps, [r["val_loss"] for r in rows], marker=".", label="val loss")
    best = min(rows, key=lambda r: r["val_loss"])
    ax.plot([best["step"]], [best["val_loss"]], marker="*", markersize=14, linestyle="none", color="C3",
            label=f"best val {best['val_loss']:.4f} at step {best['step']:.0f} (best.pt)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per character)")
    ax.grid(alpha=0.3)
    tokens = ax.secondary_xaxis("top", functions=(lambda s: s * tokens_per_step / 1e6, lambda t: t * 1e6 / tokens_per_step))
    tokens.set_xlabel("training tokens (millions)")
    lr_ax = ax.twinx()
    lr_ax.plot(steps, [r["lr"] for r in rows], color="grey", linestyle=":", label="learning rate")
    lr_ax.set_ylabel("learning rate")
    lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    handles = ax.get_legend_handles_labels()[0] + lr_ax.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="upper right")
    write_atomically(png_path, lambda f: fig.savefig(f, format="png", dpi=100))
