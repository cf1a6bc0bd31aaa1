"""Checkpoints: one dict of tensors and plain Python types, so torch.load(weights_only=True) can read it
safely.

    model, model_config, tokenizer       what generate.py and evaluate.py need (best.pt holds only these and the state)
    step, best_val_loss, ...             the run's state (train.RunState) at the time of saving
    train_config                         the run's hyperparameters (not how it was launched: device, dtype, compile)
    optimizer, scaler, rng               what --resume needs on top (last.pt)

A checkpoint saved on one device resumes on another: tensors load to the CPU first, the loss scaler's state is
used only where a scaler runs, and the optimizer keeps the kernel choice made for the device it now runs on.
"""

from dataclasses import asdict
from pathlib import Path

import torch
import torch.distributed as dist

from extras.cli import CLIError
from extras.files import write_atomically
from extras.distributed import Ranks
from extras.tokenizer import tokenizer_to_dict
from model import GPT, GPTConfig


def save_checkpoint(path: Path, checkpoint: dict) -> None:
    """Write checkpoint to path atomically: a crash mid-write leaves the previous file intact."""
    write_atomically(path, lambda f: torch.save(checkpoint, f))


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint saved by this repo, refusing anything that is not one (without running any code in it)."""
    if not path.is_file():
        raise CLIError(f"no checkpoint at {path}; train one first with `python train.py` or pass the right path")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated, foreign or unsafe files
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CLIError(f"{path} is not a readable checkpoint ({first_line[:160]})") from None
    required = {"model", "model_config", "step"}
    if not isinstance(checkpoint, dict) or not required <= checkpoint.keys():
        raise CLIError(f"{path} is not a checkpoint written by train.py (missing {sorted(required - set(checkpoint or {}))})")
    # "vocab": a character vocabulary, before BPE
    if "tokenizer" not in checkpoint and "vocab" not in checkpoint:
        raise CLIError(f"{path} is not a checkpoint written by train.py (it holds no tokenizer)")
    return checkpoint


def model_from_checkpoint(checkpoint: dict, device: torch.device) -> GPT:
    """The trained model a checkpoint holds, on device, in eval mode."""
    model = GPT(GPTConfig(**checkpoint["model_config"]))
    model.load_state_dict(checkpoint["model"])
    return model.to(device).eval()


def make_checkpoint(model: GPT, model_cfg: GPTConfig, train_config: dict, tokenizer, state: dict,
                    optimizers: list | None = None, scaler=None, rng: dict | None = None) -> dict:
    """The checkpoint dict of a run: weights, configs, tokenizer and state (best.pt), and with optimizers,
    also what --resume needs (last.pt): the optimizers' and loss scaler's states and the random states
    (rng_states())."""
    ckpt = {"model": model.state_dict(), "model_config": asdict(model_cfg), "train_config": train_config,
            "tokenizer": tokenizer_to_dict(tokenizer), **state}
    if optimizers is not None:
        ckpt.update(optimizer=optimizers[0].state_dict(), scaler=scaler.state_dict(), rng=rng)
        if len(optimizers) > 1:  # --optimizer muon
            ckpt["muon"] = optimizers[1].state_dict()
    return ckpt


def restore_training(checkpoint: dict, model: GPT, optimizers: list, scaler) -> None:
    """Load last.pt's weights, optimizer and loss scaler states into a run built with the same settings."""
    model.load_state_dict(checkpoint["model"])
    restore_optimizer(optimizers[0], checkpoint["optimizer"])
    if len(optimizers) > 1:
        restore_optimizer(optimizers[1], checkpoint["muon"])
    if not restore_scaler(scaler, checkpoint["scaler"]) and scaler.is_enabled():
        print("the checkpoint was trained without loss scaling; float16 here starts a fresh loss scaler")


def check_writable(out_dir: Path) -> None:
    """Fail before training, not at the first checkpoint, if out_dir cannot be written."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".write-test.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise CLIError(f"cannot write to --out_dir {out_dir} ({e.strerror or e}); pick a folder you can write to") from None


def restore_optimizer(optimizer: torch.optim.Optimizer, saved: dict) -> None:
    """Load saved optimizer state, but keep the kernel this device was given (fused, foreach) and the peak
    learning rate this run was given ("peak_lr": a resumed run may change --learning_rate; older checkpoints
    have none).

    load_state_dict() would also bring back the saved run's kernel flags: a run saved with fused AdamW on a
    GPU and resumed where fused is missing would then fail at its first step.
    """
    kernels = [{k: g[k] for k in ("fused", "foreach", "capturable", "peak_lr") if k in g} for g in optimizer.param_groups]
    optimizer.load_state_dict(saved)
    for group, keep in zip(optimizer.param_groups, kernels):
        group.update(keep)
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            # fused and capturable kernels keep the step count on the device
            if torch.is_tensor(state.get("step")):
                on_device = group.get("fused") or group.get("capturable")
                state["step"] = state["step"].to(p.device if on_device else "cpu", torch.float32)


def restore_scaler(scaler: torch.amp.GradScaler, saved: dict) -> bool:
    """Load a saved loss scaler's state where both scalers were on; returns whether it was loaded.

    A run saved without a scaler (CPU, MPS, a bfloat16 GPU) saves {}; resumed in float16 (a T4) the scaler
    starts afresh and finds its scale within a few steps. Saved with one and resumed without, there is nothing
    to restore.
    """
    if scaler.is_enabled() and saved:
        scaler.load_state_dict(saved)
        return True
    return False


def rng_states(device: torch.device, batch_generator: torch.Generator, ranks: Ranks = Ranks()) -> dict:
    """Every random state the run depends on: batch order (the same on every rank), and dropout on the CPU and
    on the device, which differs per rank: under torchrun, every rank's dropout states are gathered (all ranks
    call this)."""
    own = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        own["cuda"] = torch.cuda.get_rng_state(device)
    elif device.type == "mps":
        own["mps"] = torch.mps.get_rng_state()
    states = {"batches": batch_generator.get_state(), **own}
    if ranks.world_size > 1:
        gathered = {}
        for key, state in own.items():  # all CPU byte tensors, even the CUDA generator's
            gathered[key] = [torch.empty_like(state) for _ in range(ranks.world_size)]
            dist.all_gather(gathered[key], state, group=ranks.cpu_group)
        states["ranks"] = [{key: gathered[key][r] for key in own} for r in range(ranks.world_size)]
    return states


def set_rng_states(states: dict, device: torch.device, batch_generator: torch.Generator, ranks: Ranks = Ranks()) -> None:
    """Restore what rng_states() saved. A rank with no saved state (the run had fewer ranks) keeps its fresh
    seed; a device generator saved on another kind of device is skipped (the batch order and CPU states still
    carry over)."""
    batch_generator.set_state(states["batches"])
    if "ranks" in states and len(states["ranks"]) == ranks.world_size:
        states = states["ranks"][ranks.rank]
    elif not ranks.is_main:
        return
    torch.set_rng_state(states["torch"])
    if device.type == "cuda" and "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"], device)
    elif device.type == "mps" and "mps" in states:
        torch.mps.set_rng_state(states["mps"])
