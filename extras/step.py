"""What train.py's training step is made of (the step itself is its loop): random batches of the token ids,
and the optimizers (AdamW, and Muon for the block matrices with --optimizer muon).
"""

import functools

import numpy as np
import torch

from model import GPT


def sample_starts(n_tokens: int, block_size: int, batch_size: int, generator: torch.Generator) -> np.ndarray:
    """Random start offsets of batch_size windows of block_size + 1 tokens inside n_tokens."""
    return torch.randint(n_tokens - block_size, (batch_size,), generator=generator).numpy()


def get_batch(data: np.ndarray, block_size: int, starts: np.ndarray, device: torch.device):
    """Inputs x and targets y, both (B, T), from the windows of data at starts; y is x shifted one to the
    left."""
    offsets = starts[:, None] + np.arange(block_size + 1)  # (B, T + 1)
    window = torch.from_numpy(data[offsets].astype(np.int64))  # one vectorised read of just these windows
    window = to_device(window, device)
    return window[:, :-1], window[:, 1:]


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """t copied to device; on CUDA from page-locked memory, so the copy runs while the GPU is busy."""
    return t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t.to(device)


@functools.cache
def has_fused_adamw(device_type: str) -> bool:
    """Whether the installed torch has a fused AdamW kernel for this kind of device: one kernel for every
    parameter's update instead of several per parameter. Tried for real once, since support differs by torch
    version and device."""
    try:
        p = torch.zeros(2, device=device_type, requires_grad=True)
        p.grad = torch.ones_like(p)
        torch.optim.AdamW([p], fused=True).step()
        return True
    except (RuntimeError, ValueError, TypeError):
        return False


def configure_optimizer(model: GPT, learning_rate: float, weight_decay: float, betas: tuple[float, float],
                        device: torch.device, fused: bool | None = None, kind: str = "adamw",
                        muon_lr: float | None = None, muon_dtype: torch.dtype | None = None
                        ) -> list[torch.optim.Optimizer]:
    """The optimizers of a run, in a list: [AdamW], or for kind "muon" [AdamW, Muon], where Muon takes the
    matrices inside the blocks at muon_lr (extras/modern.py's make_muon says which, and how), AdamW the rest.

    AdamW decays matmul weights and embeddings only, not biases and norm gains, and uses the fused kernel
    wherever this torch has one for the device (docs/BENCHMARKS.md measures what it saves on a CPU), unless
    fused says otherwise (bench.py compares the two). Every param group remembers its peak rate as "peak_lr";
    train.py scales each by the schedule.
    """
    if kind not in ("adamw", "muon"):
        raise ValueError(f"optimizer must be adamw or muon, got {kind!r}")
    muon, params = None, list(model.parameters())  # a tied embedding/head matrix comes once
    if kind == "muon":
        from extras.modern import make_muon  # only for --optimizer muon
        muon, params = make_muon(model, muon_lr or learning_rate, weight_decay, device, muon_dtype)
    if fused is None:
        fused = has_fused_adamw(device.type)
    decay, no_decay = [p for p in params if p.dim() >= 2], [p for p in params if p.dim() < 2]
    adamw = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay, "peak_lr": learning_rate},
                               {"params": no_decay, "weight_decay": 0.0, "peak_lr": learning_rate}],
                              lr=learning_rate, betas=betas, fused=fused or None)
    return [adamw] if muon is None else [adamw, muon]
