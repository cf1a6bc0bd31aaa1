"""Evaluation: the exact mean loss over a whole split, read from the token memory map a batch of windows at a
time.

The split is cut into non-overlapping windows of block_size tokens, so every token after the first is
predicted exactly once; the score is the mean cross-entropy over all of those predictions. Training's in-run
evaluations and evaluate.py call the same evaluate() with the same Precision, the same EVAL_BATCH_SIZE and
float32 logits, so the val loss a run logs is the number evaluate.py prints for its checkpoint on the same
device.
"""

import math
from collections.abc import Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from extras.ranks import Ranks
from extras.precision import Precision
from extras.step import get_batch, sample_starts, to_device
from model import GPT

# Windows per forward pass in every evaluation: fixed, not the training micro-batch (which shrinks with ranks
# and gradient accumulation), so that a run's logged loss does not depend on how its training batch was split.
EVAL_BATCH_SIZE = 64


def eval_windows(ids: np.ndarray, block_size: int, batch_size: int = EVAL_BATCH_SIZE, rank: int = 0,
                 world_size: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x, y) batches, each (b, block_size) on the CPU, of the non-overlapping windows of ids: rank
    takes every world_size-th window. Reads batch_size windows of ids at a time, so a memory map of any size
    streams through.

    The last window is padded, with target -1 (ignored); the padding comes after the real positions, so causal
    attention keeps it from changing their predictions.
    """
    n = len(ids) - 1  # next-token predictions in ids
    mine = range(rank, math.ceil(n / block_size), world_size)  # this rank's window numbers
    for i in range(0, len(mine), batch_size):
        starts = np.asarray(mine[i : i + batch_size], dtype=np.int64) * block_size  # (b,)
        offsets = starts[:, None] + np.arange(block_size + 1)  # (b, T + 1): positions of inputs and targets
        # past the end: any token, masked below
        window = torch.from_numpy(ids[np.minimum(offsets, n)].astype(np.int64))
        x, y = window[:, :-1].clone(), window[:, 1:].clone()
        beyond = torch.from_numpy(offsets[:, 1:] > n)  # (b, T): no target there
        x[beyond], y[beyond] = 0, -1
        yield x, y


def evaluate(model: GPT, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], precision: Precision,
             ranks: Ranks = Ranks()) -> float:
    """Mean cross-entropy over every target that is not -1 in batches of (x, y), in eval mode, over all
    ranks."""
    loss_sum, n_targets = loss_and_count(model, batches, precision, ranks)
    return loss_sum / n_targets


@torch.no_grad()
def loss_and_count(model: GPT, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], precision: Precision,
                   ranks: Ranks = Ranks()) -> tuple[float, int]:
    """The summed cross-entropy and the number of targets (not -1) in batches of (x, y), added up over ranks.

    The model's logits are float32 on every device (model.py computes the head outside autocast). Targets are
    counted on the host as integers, so the count is exact at any size; the loss is summed in float64 where
    the device has it (MPS does not: float32 there). One host sync per call, at the end.
    """
    was_training = model.training
    model.eval()
    device = precision.device
    total = torch.zeros((), dtype=torch.float32 if device.type == "mps" else torch.float64, device=device)
    n_targets = 0
    for x, y in batches:
        n_targets += int((y != -1).sum())  # y is still on the host: no device sync
        x, y = to_device(x, device), to_device(y, device)
        with precision.autocast():
            logits, _ = model(x)  # (B, T, V), float32
        total += F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-1, reduction="sum")
    model.train(was_training)
    # float64: exact counts up to 2**53
    loss_sum, n_targets = ranks.agree([total.item(), n_targets], op="sum")
    return loss_sum, int(n_targets)


class EvalSets:
    """What a training run evaluates on, fixed for the whole run so that successive evaluations compare: the
    start of the val split (all of it for Tiny Shakespeare, at most eval_tokens) and a sample of as many train
    windows."""

    def __init__(self, data, block_size: int, eval_tokens: int, seed: int):
        self.block_size = block_size
        self.val_ids = data.val[: eval_tokens + 1]
        self.n_val_targets = len(self.val_ids) - 1
        # Bits per character: the loss in a unit that does not depend on the tokenizer.
        self.chars_per_target = 1.0  # a char token is one character
        if data.tokenizer.kind == "bpe":  # a BPE token can hold several (extras/bpe.py counts them)
            from extras.bpe import count_chars
            self.chars_per_target = count_chars(data.tokenizer, self.val_ids[1:]) / self.n_val_targets
        n_windows = math.ceil(self.n_val_targets / block_size)
        starts = sample_starts(len(data.train), block_size, n_windows, torch.Generator().manual_seed(seed))
        self.train_x, self.train_y = get_batch(data.train, block_size, starts, torch.device("cpu"))

    def losses(self, model: GPT, precision: Precision, ranks: Ranks = Ranks()) -> dict:
        """{"train": loss, "val": loss, "val_bpc": val bits per character}, each rank evaluating its share."""
        r, w, b = ranks.rank, ranks.world_size, EVAL_BATCH_SIZE
        val_batches = eval_windows(self.val_ids, self.block_size, b, r, w)
        train_batches = zip(self.train_x[r::w].split(b), self.train_y[r::w].split(b))  # this rank's share
        losses = {"train": evaluate(model, train_batches, precision, ranks),
                  "val": evaluate(model, val_batches, precision, ranks)}
        losses["val_bpc"] = losses["val"] / self.chars_per_target / math.log(2)
        return losses
