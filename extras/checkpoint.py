"""Checkpoints: one dict of tensors and plain Python types, so torch.load(weights_only=True) can read it
safely.

    model, model_config, tokenizer       what generate.py and evaluate.py need (best.pt holds only these and the state)
    step, best_val_loss, ...             the run's state (train.RunState) at the time of saving
    train_config                         the run's hyperparameters (not how it was launched: device, dtype, compile)
    optimizer, scaler, rng               what --resume needs on top (last.pt; extras/resume.py restores it)
"""

from dataclasses import asdict
from pathlib import Path

import torch
import torch.distributed as dist

from extras.cli import CLIError
from extras.files import write_atomically
from extras.ranks import Ranks
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


def make_checkpoint(settings, state, model: GPT, tokenizer, optimizers: list | None = None, scaler=None,
                    batch_generator: torch.Generator | None = None, ranks: Ranks = Ranks()) -> dict:
    """A run's checkpoint as one dict of plain data and tensors: the weights, the model's architecture, the
    run's settings and state (dataclasses) and the tokenizer: best.pt. Given the optimizers, also what --resume
    needs: their states, the loss scaler's and every random state (last.pt; every rank must call it then)."""
    ckpt = {"model": model.state_dict(), "model_config": asdict(model.config), "train_config": asdict(settings),
            "tokenizer": tokenizer_to_dict(tokenizer), **asdict(state)}
    if optimizers is not None:
        ckpt.update(optimizer=optimizers[0].state_dict(), scaler=scaler.state_dict(),
                    rng=rng_states(next(model.parameters()).device, batch_generator, ranks))
        if len(optimizers) > 1:  # --optimizer muon
            ckpt["muon"] = optimizers[1].state_dict()
    return ckpt


def check_writable(out_dir: Path) -> None:
    """Fail before training, not at the first checkpoint, if out_dir cannot be written."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".write-test.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise CLIError(f"cannot write to --out_dir {out_dir} ({e.strerror or e}); pick a folder you can write to") from None


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
