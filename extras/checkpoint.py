"""Checkpoints: one dict of tensors and plain Python types, which torch.load(weights_only=True) reads safely.

    model, model_config, tokenizer   what generate.py and evaluate.py need (best.pt: these and the state)
    step, best_val_loss, ...         the run's state (train.RunState) at the time of saving
    train_config                     the run's settings (not how it was launched: device, dtype, compile)
    data_sha256                      the sha256 of the text it trained on: --resume needs that text
    optimizer, scaler, rng           what --resume needs on top (last.pt; extras/resume.py restores it)

train.py's make_checkpoint builds the dict and extras/files.py's save_checkpoint writes it; this module reads
it back, for generate.py, evaluate.py, visualize.py and --resume.
"""

from pathlib import Path

import torch

from extras.cli import CLIError
from extras.commands import shell_command
from extras.tokenizer import CharTokenizer
from model import GPT, GPTConfig


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint saved by this repo, refusing anything that is not one (without running any code in
    it)."""
    if not path.is_file():
        train_one = shell_command("python", "train.py")
        raise CLIError(f"no checkpoint at {path}; train one first with `{train_one}` or pass the right path")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated, foreign or unsafe files
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CLIError(f"{path} is not a readable checkpoint ({first_line[:160]})") from None
    required = {"model", "model_config", "step"}
    if not isinstance(checkpoint, dict) or not required <= checkpoint.keys():
        raise CLIError(f"{path} is not a checkpoint written by train.py "
                       f"(missing {sorted(required - set(checkpoint or {}))})")
    # "vocab": a character vocabulary, before BPE
    if "tokenizer" not in checkpoint and "vocab" not in checkpoint:
        raise CLIError(f"{path} is not a checkpoint written by train.py (it holds no tokenizer)")
    return checkpoint


def model_from_checkpoint(checkpoint: dict, device: torch.device) -> GPT:
    """The trained model a checkpoint holds, on device, in eval mode."""
    model = GPT(GPTConfig(**checkpoint["model_config"]))
    model.load_state_dict(checkpoint["model"])
    return model.to(device).eval()


def tokenizer_from_checkpoint(ckpt: dict):
    """The tokenizer a checkpoint was trained with: ckpt["tokenizer"], or older versions' character vocabulary
    ckpt["vocab"]."""
    if "tokenizer" in ckpt:
        return tokenizer_from_dict(ckpt["tokenizer"])
    if "vocab" in ckpt:
        return tokenizer_from_dict({"kind": "char", "data": ckpt["vocab"]})
    raise ValueError("the checkpoint holds no tokenizer (neither 'tokenizer' nor 'vocab')")


def tokenizer_from_dict(d):
    """Rebuild a tokenizer saved by tokenizer_to_dict; ValueError if d is not one."""
    if not isinstance(d, dict) or not isinstance(d.get("data"), str):
        raise ValueError("a saved tokenizer must be a dict with a string 'data'")
    if d.get("kind") == "char":
        if not d["data"]:
            raise ValueError("the saved character vocabulary is empty")
        return CharTokenizer(d["data"])
    if d.get("kind") == "bpe":
        from extras.bpe import BPETokenizer  # only for --tokenizer bpe (it needs the tokenizers package)
        return BPETokenizer(d["data"])
    raise ValueError(f"unknown tokenizer kind {d.get('kind')!r} (expected 'char' or 'bpe')")
