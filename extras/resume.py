"""--resume: load last.pt, check that the flags given can continue it, and put the weights, the optimizer and
loss scaler states and the random states back. Only --resume imports this module.

A checkpoint saved on one device resumes on another: tensors load to the CPU first, the loss scaler's state is
used only where a scaler runs, and the optimizer keeps the kernel choice made for the device it now runs on.
"""

from dataclasses import fields, replace
from pathlib import Path

import torch

from extras.checkpoint import load_checkpoint
from extras.cli import CLIError
from extras.ranks import Ranks
from model import GPT, GPTConfig


def resume_run(path: Path, given: dict, config_class, default_data: Path):
    """(last.pt's contents, TrainConfig, GPTConfig) of the run to continue from path with the flags given,
    once its text is checked to be the one it trained on (default_data: where Tiny Shakespeare goes)."""
    checkpoint = load_resumable(path)
    cfg, model_cfg = resumed_configs(checkpoint, given, config_class)
    data_path = Path(cfg.data) if cfg.data else default_data
    is_default = data_path.resolve() == default_data.resolve()
    check_same_text(checkpoint, data_path, given=("data" in given), default_corpus=is_default)
    print(f"resuming {path} at step {checkpoint['step']} of {cfg.max_iters}")
    return checkpoint, cfg, model_cfg


def load_resumable(path: Path) -> dict:
    """last.pt, refused in one line if it is not a checkpoint train.py can continue."""
    checkpoint = load_checkpoint(path)
    if "optimizer" not in checkpoint:
        raise CLIError(f"{path} holds weights but no optimizer state (as best.pt does), so it cannot be "
                       "resumed; sample from it with generate.py, or start a new run with --overwrite")
    return checkpoint


def resumed_configs(checkpoint: dict, given: dict, config_class):
    """(TrainConfig, GPTConfig) of a resumed run: the model's shape, tokenizer and optimizer are the
    checkpoint's (a flag that would change them is refused); other settings may change (a longer
    --max_iters, say)."""
    train_names = {f.name for f in fields(config_class)}
    # Older versions saved settings since dropped (eval_iters, device), which are ignored, and lack those
    # added since, which take their defaults: what those versions did (AdamW, no patience; GPT-2's pieces).
    model_cfg = GPTConfig(**checkpoint["model_config"])
    saved_cfg = config_class(**{k: v for k, v in checkpoint["train_config"].items() if k in train_names})
    clashes = [f"--{k} {v} (checkpoint has {getattr(model_cfg, k)})" for k, v in given.items()
               if k not in train_names and getattr(model_cfg, k) != v]
    clashes += [f"--{k} {given[k]} (checkpoint has {getattr(saved_cfg, k)})"
                for k in ("tokenizer", "vocab_size", "recipe", "optimizer")
                if k in given and given[k] != getattr(saved_cfg, k)]
    if clashes:
        raise CLIError("--resume cannot change the model's shape, tokenizer or optimizer: "
                       + ", ".join(clashes))
    return replace(saved_cfg, **{k: v for k, v in given.items() if k in train_names}), model_cfg


def check_same_text(checkpoint: dict, data_path: Path, given: bool, default_corpus: bool) -> None:
    """Refuse, before anything is downloaded or written, to go on with a text other than the one last.pt was
    trained on: the file at data_path (--data if given, else the path last.pt holds) must have the sha256 that
    last.pt recorded. A moved file or a Colab path on a laptop is then one line, never a download to a stale
    path. default_corpus: data_path is where train.py downloads Tiny Shakespeare, fetched if missing."""
    saved = checkpoint.get("data_sha256")  # None: a checkpoint from before it was recorded
    fix = "pass the text it was trained on with --data PATH, or start a new run with --overwrite"
    if not data_path.is_file():
        from extras.download import DATA_SHA256
        if default_corpus and saved in (None, DATA_SHA256):
            return  # Tiny Shakespeare: downloaded to its place next
        if given:
            raise CLIError(f"data file {data_path} does not exist; check the --data path")
        raise CLIError(f"the text this run was trained on is no longer at {data_path} (moved, or trained on "
                       f"another machine?); pass its new place with --data PATH")
    if saved is None:
        print(f"note: last.pt was saved before checkpoints kept the text's sha256, so {data_path} cannot be "
              "checked to be the text it was trained on")
        return
    from extras.dataset import file_sha256
    try:
        same = file_sha256(data_path) == saved
    except OSError as e:
        raise CLIError(f"cannot read data file {data_path}: {e.strerror}") from None
    if not same:
        raise CLIError(f"{data_path}{' (--data)' if given else ', where last.pt says its text was,'} is not "
                       f"the text this run was trained on (its sha256 differs from last.pt's); {fix}")


def restore_training(checkpoint: dict, model: GPT, optimizers: list, scaler, batch_generator: torch.Generator,
                     ranks: Ranks = Ranks()) -> None:
    """Load last.pt's weights, optimizer and loss scaler states and random states into a run built with the
    same settings."""
    model.load_state_dict(checkpoint["model"])
    restore_optimizer(optimizers[0], checkpoint["optimizer"])
    if len(optimizers) > 1:
        restore_optimizer(optimizers[1], checkpoint["muon"])
    if not restore_scaler(scaler, checkpoint["scaler"]) and scaler.is_enabled():
        print("the checkpoint was trained without loss scaling; float16 here starts a fresh loss scaler")
    set_rng_states(checkpoint["rng"], next(model.parameters()).device, batch_generator, ranks)


def restore_optimizer(optimizer: torch.optim.Optimizer, saved: dict) -> None:
    """Load saved optimizer state, but keep the kernel this device was given (fused, foreach) and the peak
    learning rate this run was given ("peak_lr": a resumed run may change --learning_rate; older checkpoints
    have none).

    load_state_dict() would also bring back the saved run's kernel flags: a run saved with fused AdamW on a
    GPU and resumed where fused is missing would then fail at its first step.
    """
    kernels = [{k: g[k] for k in ("fused", "foreach", "capturable", "peak_lr") if k in g}
               for g in optimizer.param_groups]
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


def set_rng_states(states: dict, device: torch.device, batch_generator: torch.Generator,
                   ranks: Ranks = Ranks()) -> None:
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
