"""Train a GPT on Tiny Shakespeare (or any UTF-8 text file), one character or one BPE token at a time.

    python train.py                      # medium on a GPU / Apple MPS; a 5-minute run on a CPU
    python train.py --preset small --max_iters 2000
    python train.py --data my.txt --tokenizer bpe --vocab_size 1024
    python train.py --resume             # continue out/last.pt where it stopped
    torchrun --standalone --nproc_per_node=4 train.py    # data parallel over 4 GPUs

Read top to bottom: the training settings, the command line, device choice, running on several processes, data,
the learning-rate schedule, evaluation, checkpoints, then `train()` — the loop itself — and `main()`.
"""

import argparse
import csv
import datetime
import hashlib
import importlib.util
import math
import os
import signal
import sys
import time
import types
import typing
import urllib.error
import urllib.request
from contextlib import nullcontext, redirect_stdout
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from dataset import DataError, TokenData, prepare, write_atomically
from model import GPT, PRESETS, GPTConfig
from tokenizer import check_bpe_vocab_size, tokenizer_from_checkpoint, tokenizer_to_dict

DATA_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
DATA_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
DEFAULT_DATA = Path(__file__).resolve().parent / "data" / "tinyshakespeare.txt"

# Exit codes: 2 for a problem with what the user passed (flags, files), 1 for a run that failed on its own,
# 130 for Ctrl-C (the shell's convention for SIGINT).
EXIT_USAGE, EXIT_FAILED, EXIT_INTERRUPTED = 2, 1, 130


@dataclass
class TrainConfig:
    """Everything about a training run that is not the architecture. Each field is also a command-line flag."""

    data: str | None = field(default=None, metadata={"help": "UTF-8 text file to train on, of any size", "default_help": "Tiny Shakespeare in data/, downloaded on first use"})
    out_dir: str = field(default="out", metadata={"help": "folder for checkpoints and metrics.csv"})
    cache_dir: str | None = field(default=None, metadata={"help": "folder for the encoded token files, reused while the text and tokenizer are unchanged", "default_help": "out_dir/cache"})
    tokenizer: str = field(default="char", metadata={"help": "char: one token per character; bpe: byte-level BPE trained on the train split", "choices": ["char", "bpe"]})
    vocab_size: int = field(default=1024, metadata={"help": "BPE vocabulary size, the 256 bytes included (--tokenizer bpe only)"})
    preset: str | None = field(default=None, metadata={"help": "model size", "default_help": "medium on GPU/MPS; a quick run on CPU", "choices": list(PRESETS)})
    resume: bool = field(default=False, metadata={"help": "continue the run in out_dir from last.pt"})
    overwrite: bool = field(default=False, metadata={"help": "start a new run even if out_dir already holds one"})
    batch_size: int = field(default=64, metadata={"help": "sequences per optimizer step, over all ranks and micro-steps (the global batch)"})
    grad_accum_steps: int = field(default=1, metadata={"help": "split each step's batch into this many micro-steps, to fit memory; same result"})
    max_iters: int = field(default=5000, metadata={"help": "optimizer steps in the whole run"})
    time_budget: float = field(default=0.0, metadata={"help": "seconds of training; the run and its LR schedule end when they are spent (0: no limit)"})
    learning_rate: float = field(default=1e-3, metadata={"help": "peak learning rate, reached at the end of warmup"})
    min_lr: float = field(default=1e-4, metadata={"help": "learning rate at the end of the cosine decay"})
    warmup_iters: int = field(default=100, metadata={"help": "steps of linear warmup from near 0 to learning_rate"})
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW weight decay, applied to 2-D weights only"})
    beta1: float = field(default=0.9, metadata={"help": "AdamW beta1"})
    beta2: float = field(default=0.99, metadata={"help": "AdamW beta2"})
    grad_clip: float = field(default=1.0, metadata={"help": "clip the gradient norm to this (0 turns clipping off)"})
    eval_interval: int = field(default=250, metadata={"help": "evaluate and checkpoint every this many steps"})
    eval_tokens: int = field(default=500_000, metadata={"help": "evaluate on at most this many val tokens (the start of the val split) and as many train tokens"})
    patience: int = field(default=0, metadata={"help": "stop after this many evaluations without a new best val loss (0: never)"})
    log_interval: int = field(default=10, metadata={"help": "update the progress bar's loss every this many steps"})
    sample_chars: int = field(default=300, metadata={"help": "tokens (characters, for char) to sample at the end of the run (0: none)"})
    seed: int = field(default=1337, metadata={"help": "random seed: same seed and flags on CPU give the same losses"})
    device: str = field(default="auto", metadata={"help": "auto picks cuda, then mps, then cpu", "choices": ["auto", "cpu", "cuda", "mps"]})
    compile: str = field(default="auto", metadata={"help": "torch.compile the training step: auto (CUDA with Triton only), on, off", "choices": ["auto", "on", "off"]})
    dtype: str = field(default="auto", metadata={"help": "auto: bfloat16 on GPUs that have it, float16 on older GPUs, float32 elsewhere", "choices": ["auto", "float32", "bfloat16", "float16"]})


# What `python train.py` runs when the device is a CPU and no --preset was given: the medium preset would take about a
# day there. Five minutes of the tiny preset instead, with the batch, context and learning rate that reached the
# lowest full-val loss in 100-second runs on a 2-core machine (docs/tune_cpu.sh, docs/BENCHMARKS.md). Flags override.
CPU_DEFAULTS = {"preset": "tiny", "batch_size": 32, "block_size": 64, "learning_rate": 4e-3, "warmup_iters": 50,
                "time_budget": 300.0, "max_iters": 100_000, "eval_interval": 1000}


class CLIError(Exception):
    """A problem the user can fix; main() prints it as one line and exits with `code`."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


# ----------------------------------------------------------------------------------------------------------------
# Command line: flags are generated from the fields of TrainConfig and GPTConfig, help text and all.

MODEL_FLAGS = [f for f in fields(GPTConfig) if f.name != "vocab_size"]  # the vocabulary comes from the data


class FlagParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (a CLIError) instead of usage text plus a line."""

    def error(self, message):
        raise CLIError(f"{message} (see --help)")


def _flag_type(annotation):
    """The type a flag parses to: int for `int | None`, and so on."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def add_dataclass_flags(parser: argparse.ArgumentParser, flag_fields, default_text) -> None:
    """Add one --name flag per dataclass field. Unset flags stay out of the namespace so we know what was given."""
    for f in flag_fields:
        kind = _flag_type(f.type)
        kwargs = dict(default=argparse.SUPPRESS, help=f"{f.metadata['help']} ({default_text(f)})")
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = kind
            kwargs["metavar"] = kind.__name__.upper()
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
            kwargs.pop("metavar", None)
        parser.add_argument(f"--{f.name}", **kwargs)


def parse_flags(argv) -> dict:
    """Parse argv into a dict holding only the flags the user actually gave."""
    parser = FlagParser(description="Train a character-level GPT.")
    add_dataclass_flags(parser.add_argument_group("training"), fields(TrainConfig),
                        lambda f: f"default: {f.metadata.get('default_help', f.default)}")
    add_dataclass_flags(parser.add_argument_group("model (override the preset)"), MODEL_FLAGS, lambda f: "default: from the preset")
    return vars(parser.parse_args(argv))


def validate(cfg: TrainConfig, model_cfg: GPTConfig, world_size: int = 1) -> None:
    """Reject settings that cannot train, naming the flag."""
    positive = {"batch_size": cfg.batch_size, "max_iters": cfg.max_iters, "learning_rate": cfg.learning_rate,
                "eval_interval": cfg.eval_interval, "log_interval": cfg.log_interval, "eval_tokens": cfg.eval_tokens,
                "grad_accum_steps": cfg.grad_accum_steps,
                "block_size": model_cfg.block_size, "n_layer": model_cfg.n_layer, "n_head": model_cfg.n_head,
                "n_embd": model_cfg.n_embd}
    for name, value in positive.items():
        if not value > 0:
            raise CLIError(f"--{name} must be positive, got {value}")
    for name in ("min_lr", "warmup_iters", "weight_decay", "grad_clip", "sample_chars", "patience", "time_budget"):
        if getattr(cfg, name) < 0:
            raise CLIError(f"--{name} must be >= 0, got {getattr(cfg, name)}")
    if cfg.min_lr > cfg.learning_rate:
        raise CLIError(f"--min_lr ({cfg.min_lr}) must not exceed --learning_rate ({cfg.learning_rate})")
    if not 0 <= model_cfg.dropout < 1:
        raise CLIError(f"--dropout must be in [0, 1), got {model_cfg.dropout}")
    if model_cfg.n_embd % model_cfg.n_head:
        raise CLIError(f"--n_embd ({model_cfg.n_embd}) must be divisible by --n_head ({model_cfg.n_head})")
    if cfg.tokenizer == "bpe":
        try:
            check_bpe_vocab_size(cfg.vocab_size)  # here too, so a bad size fails before the text is read
        except ValueError as e:
            raise CLIError(f"--{e}") from None
    # The global batch is shared out evenly: each rank runs grad_accum_steps micro-batches of equal size.
    parts = world_size * cfg.grad_accum_steps
    if cfg.batch_size % parts:
        raise CLIError(f"--batch_size {cfg.batch_size} does not split evenly over {world_size} rank(s) x "
                       f"{cfg.grad_accum_steps} micro-step(s); use a multiple of {parts}, "
                       f"e.g. --batch_size {math.ceil(cfg.batch_size / parts) * parts}")


# ----------------------------------------------------------------------------------------------------------------
# Device and precision: chosen once, with the reason printed.


def pick_device(requested: str) -> tuple[torch.device, str]:
    """Resolve --device to a torch.device and say why; a requested device that is missing is a CLIError."""
    has_cuda = torch.cuda.is_available()
    has_mps = torch.backends.mps.is_available()
    if requested == "auto":
        if has_cuda:
            return torch.device("cuda"), f"CUDA GPU found: {torch.cuda.get_device_name(0)}"
        if has_mps:
            return torch.device("mps"), "Apple MPS found"
        return torch.device("cpu"), "no CUDA GPU or Apple MPS found"
    if requested == "cuda" and not has_cuda:
        raise CLIError("--device cuda was requested but this PyTorch sees no CUDA GPU; use --device auto or cpu")
    if requested == "mps" and not has_mps:
        raise CLIError("--device mps was requested but Apple MPS is not available here; use --device auto or cpu")
    return torch.device(requested), "requested with --device"


def pick_dtype(device: torch.device, requested: str) -> tuple[torch.dtype, str]:
    """Choose the autocast dtype for the device and say why."""
    if requested != "auto":
        dtype = getattr(torch, requested)
        if dtype != torch.float32 and device.type != "cuda":
            raise CLIError(f"--dtype {requested} is only supported on CUDA here; use --dtype float32 on {device.type}")
        return dtype, "requested with --dtype"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported(including_emulation=False):  # emulated bf16 (T4, V100) is slow
            return torch.bfloat16, "this GPU supports bfloat16: half the memory traffic, no loss scaling needed"
        return torch.float16, "this GPU has no bfloat16, so float16 with loss scaling"
    return torch.float32, f"full precision on {device.type}"


def pick_compile(device: torch.device, requested: str) -> tuple[bool, str]:
    """Decide whether to torch.compile the training step, and say why."""
    if requested == "off":
        return False, "--compile off"
    if requested == "on":
        return True, "requested with --compile on"
    if device.type != "cuda":
        return False, f"the default on {device.type}: measured no faster on CPU, unreliable on MPS (README, Speed)"
    if importlib.util.find_spec("triton") is None:
        return False, "Triton is not installed, and compiling for CUDA needs it"
    if torch.cuda.get_device_capability(device)[0] < 7:
        return False, "this GPU is older than Triton supports (compute capability < 7.0)"
    return True, "CUDA GPU with Triton"


# ----------------------------------------------------------------------------------------------------------------
# Several processes: `torchrun --nproc_per_node=N train.py` starts N copies of this script, each with RANK, LOCAL_RANK
# and WORLD_SIZE in its environment. Each copy (a rank) trains the same model on its own share of every batch, and
# DistributedDataParallel averages the gradients across ranks, so all copies take the same optimizer step.


@dataclass
class Ranks:
    """Where this process stands in a torchrun launch; rank 0 of 1 when started with plain `python`."""

    rank: int = 0
    local_rank: int = 0  # which GPU of this machine is ours
    world_size: int = 1
    cpu_group: object = None  # a gloo group for small host-side agreements; None means the default group

    @property
    def is_main(self) -> bool:
        """Rank 0 alone prints, writes files and downloads: N copies of every line and file would help no one."""
        return self.rank == 0


def start_ranks(requested_device: str) -> Ranks:
    """Join the torchrun process group if there is one: nccl between CUDA GPUs, gloo for CPUs (and Windows)."""
    if "RANK" not in os.environ:
        return Ranks()
    ranks = Ranks(int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"]))
    use_cuda = torch.cuda.is_available() and requested_device in ("auto", "cuda")
    if use_cuda:
        if ranks.local_rank >= torch.cuda.device_count():
            raise CLIError(f"torchrun started more processes on this machine than it has GPUs "
                           f"({torch.cuda.device_count()}); use --nproc_per_node={torch.cuda.device_count()}")
        torch.cuda.set_device(ranks.local_rank)
    # Generous timeout: the other ranks wait while rank 0 encodes (or BPE-trains on) a large corpus once.
    dist.init_process_group("nccl" if use_cuda else "gloo", timeout=datetime.timedelta(hours=1))
    if use_cuda:
        ranks.cpu_group = dist.new_group(backend="gloo")  # nccl only moves GPU tensors
    return ranks


def agree_on_max(value: float, ranks: Ranks) -> float:
    """The largest of every rank's value, so all ranks take the same decision (a no-op in one process)."""
    if ranks.world_size == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=ranks.cpu_group)
    return t.item()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum a device tensor over every rank, in place (a no-op in one process)."""
    if dist.is_initialized():
        dist.all_reduce(t)
    return t


# ----------------------------------------------------------------------------------------------------------------
# Data: the text is encoded once into a file of token ids (dataset.py), which we read as a memory map: a big corpus
# takes no more allocated memory than Tiny Shakespeare (docs/BENCHMARKS.md). Training batches are random windows of it.


def download(url: str, path: Path, sha256: str, timeout: float = 30.0) -> None:
    """Fetch url into path, check its sha256, and only then move it into place (no half-written file ever)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            payload = response.read()
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise CLIError(
            f"could not download the corpus from {url} ({reason}); put Tiny Shakespeare at {path} or pass --data PATH",
            EXIT_FAILED,
        ) from None
    digest = hashlib.sha256(payload).hexdigest()
    if digest != sha256:
        raise CLIError(
            f"the file from {url} has sha256 {digest}, expected {sha256}; nothing was saved. "
            f"Put the right file at {path} or pass --data PATH",
            EXIT_FAILED,
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda f: f.write(payload))


def sample_starts(n_tokens: int, block_size: int, batch_size: int, generator: torch.Generator) -> np.ndarray:
    """Random start offsets of batch_size windows of block_size + 1 tokens inside n_tokens."""
    return torch.randint(n_tokens - block_size, (batch_size,), generator=generator).numpy()


def get_batch(data: np.ndarray, block_size: int, starts: np.ndarray, device: torch.device):
    """Inputs x and targets y, both (B, T), from the windows of data at starts; y is x shifted one to the left."""
    offsets = starts[:, None] + np.arange(block_size + 1)  # (B, T + 1)
    window = torch.from_numpy(data[offsets].astype(np.int64))  # one vectorised read of just these windows
    if device.type == "cuda":  # page-locked memory lets the copy run while the GPU is busy
        window = window.pin_memory().to(device, non_blocking=True)
    else:
        window = window.to(device)
    return window[:, :-1], window[:, 1:]


# ----------------------------------------------------------------------------------------------------------------
# Learning rate: linear warmup, then cosine decay to min_lr.


def get_lr(step: int, cfg: TrainConfig, elapsed: float = 0.0) -> float:
    """Learning rate for optimizer step `step` (0-based), `elapsed` seconds into the run.

    With a time budget, the cosine follows whichever is further along, steps or time, so the model is fully
    annealed (at min_lr) when the budget runs out instead of being cut off mid-schedule.
    """
    if step < cfg.warmup_iters:
        return cfg.learning_rate * (step + 1) / cfg.warmup_iters  # never 0, reaches the peak on the last warmup step
    progress = 1.0 if step >= cfg.max_iters else (step - cfg.warmup_iters) / (cfg.max_iters - cfg.warmup_iters)  # 0 -> 1
    if cfg.time_budget:
        progress = max(progress, elapsed / cfg.time_budget)
    coeff = 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))  # 1 -> 0
    return cfg.min_lr + coeff * (cfg.learning_rate - cfg.min_lr)


# ----------------------------------------------------------------------------------------------------------------
# Optimizer and evaluation


def train_step(model: GPT, step_model, optimizer, scaler, autocast, micro_batches: list, grad_clip: float):
    """One optimizer step on micro_batches, a list of (x, y). step_model is model, its compiled twin, or either
    wrapped in DDP; they all share model's parameters.

    Gradients add up over the micro-batches (each loss divided by their number, so the sum is the mean), and DDP
    averages them over ranks: the step is the same as one on the whole batch at once. Returns the mean loss, still on
    the device: reading it (.item()) would make the host wait for the device.
    """
    optimizer.zero_grad(set_to_none=True)
    total = torch.zeros((), device=micro_batches[0][0].device)
    for i, (x, y) in enumerate(micro_batches):
        # DDP all-reduces gradients during backward(). Between micro-steps that traffic would be wasted (bn #30):
        # only the last micro-step syncs, and it sends the gradients summed over all of them.
        last = i == len(micro_batches) - 1
        with step_model.no_sync() if isinstance(step_model, DDP) and not last else nullcontext():
            with autocast:
                _, loss = step_model(x, y)
            scaler.scale(loss / len(micro_batches)).backward()
        total += loss.detach()
    if grad_clip > 0:
        scaler.unscale_(optimizer)  # clip the true gradients, not the loss-scaled ones
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return total / len(micro_batches)


def compile_for_training(model: GPT, x: torch.Tensor, y: torch.Tensor, autocast):
    """torch.compile the model and compile it now, with one forward and backward on (x, y), so that the minutes this
    can take are reported apart from the run's time. Returns the compiled module, or the model itself on failure."""
    t0 = time.perf_counter()
    try:
        compiled = torch.compile(model)
        with autocast:
            _, loss = compiled(x, y)
        loss.backward()
    except Exception as e:  # a missing compiler, an unsupported GPU, a Triton error: all mean "train without"
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        print(f"torch.compile failed ({reason}); training without it")
        return model
    finally:
        model.zero_grad(set_to_none=True)
    print(f"compiled the model in {time.perf_counter() - t0:.1f}s (not counted in the run's time)")
    return compiled


def configure_optimizer(model: GPT, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on matmul weights and embeddings only, not on biases and LayerNorm gains."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2), fused=device.type == "cuda",  # fused: one kernel on GPU
    )



def eval_windows(data: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut data into non-overlapping windows: inputs x and targets y, both (N, block_size).

    Every token after the first is a target exactly once. The last window is padded, with target -1 (ignored);
    the padding comes after the real positions, so causal attention keeps it from changing their predictions.
    """
    n = len(data) - 1  # next-token predictions in data
    N = math.ceil(n / block_size)
    x = torch.zeros(N * block_size, dtype=torch.long, device=data.device)
    y = torch.full((N * block_size,), -1, dtype=torch.long, device=data.device)
    x[:n], y[:n] = data[:-1], data[1:]
    return x.view(N, block_size), y.view(N, block_size)


@torch.no_grad()
def evaluate(model: GPT, x: torch.Tensor, y: torch.Tensor, batch_size: int, autocast=nullcontext()) -> float:
    """Mean cross-entropy over every target in y (N, T) that is not -1, batch_size windows at a time, in eval mode.

    Under torchrun each rank takes every world_size-th window and the sums are added up over ranks: every rank gets
    the same mean, over all the windows, in 1/world_size of the time.
    """
    rank, world_size = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    x, y = x[rank::world_size], y[rank::world_size]
    was_training = model.training
    model.eval()
    sums = torch.zeros(2, device=x.device)  # [total loss, number of targets]
    for i in range(0, len(x), batch_size):
        with autocast:
            logits, _ = model(x[i : i + batch_size])  # (B, T, V)
        sums[0] += F.cross_entropy(logits.flatten(0, 1).float(), y[i : i + batch_size].flatten(), ignore_index=-1, reduction="sum")
    sums[1] = (y != -1).sum()
    model.train(was_training)
    all_reduce_sum(sums)
    return (sums[0] / sums[1]).item()  # one host sync per evaluation


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints: one dict of tensors and plain Python types, so torch.load(weights_only=True) can read it safely.


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
    if "tokenizer" not in checkpoint and "vocab" not in checkpoint:  # "vocab": a character vocabulary, before BPE
        raise CLIError(f"{path} is not a checkpoint written by train.py (it holds no tokenizer)")
    return checkpoint


def rng_states(device: torch.device, batch_generator: torch.Generator, ranks: Ranks = Ranks()) -> dict:
    """Every random state the run depends on: batch order (the same on every rank), and dropout on the CPU and on
    the device, which differs per rank: under torchrun, every rank's dropout states are gathered (all ranks call this)."""
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
    """Restore what rng_states() saved. A rank with no saved state (the run had fewer ranks) keeps its fresh seed."""
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


# ----------------------------------------------------------------------------------------------------------------
# The training loop


def train(cfg: TrainConfig, model_cfg: GPTConfig, data: TokenData, device: torch.device, dtype: torch.dtype,
          resume_from: dict | None = None, use_compile: bool = False, ranks: Ranks = Ranks()) -> dict:
    """Train a GPT on the token ids in data, evaluating and checkpointing as configured. Returns a summary dict."""
    out_dir = Path(cfg.out_dir)
    torch.manual_seed(cfg.seed)  # the initial weights: the same on every rank
    B, T, A = cfg.batch_size, model_cfg.block_size, cfg.grad_accum_steps
    B_micro = B // (ranks.world_size * A)  # sequences per forward pass on this rank (validate() checked it divides)
    # Evaluation: the start of the val split (all of it for Tiny Shakespeare), and a fixed sample of as many train
    # windows. The same every time, so successive evaluations compare.
    val_ids = torch.from_numpy(data.val[: cfg.eval_tokens + 1].astype(np.int64)).to(device)
    val_x, val_y = eval_windows(val_ids, T)
    n_val_targets = int((val_y != -1).sum())
    # Bits per character: the loss in a unit that does not depend on the tokenizer (a BPE token holds several).
    chars_per_target = len(data.tokenizer.decode(data.val[1 : n_val_targets + 1].tolist())) / n_val_targets
    train_x, train_y = get_batch(data.train, T, sample_starts(len(data.train), T, len(val_x), torch.Generator().manual_seed(cfg.seed)), device)

    model = GPT(model_cfg).to(device)
    optimizer = configure_optimizer(model, cfg, device)
    # float16 needs loss scaling to keep small gradients from flushing to zero; for other dtypes this is a no-op.
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()
    step_model = compile_for_training(model, train_x[:B_micro], train_y[:B_micro], autocast) if use_compile else model
    if ranks.world_size > 1:
        # DDP copies rank 0's weights to every rank now, and from here on averages gradients during backward().
        step_model = DDP(step_model, device_ids=[device.index] if device.type == "cuda" else None)

    # Seeded after compiling, whose warm-up step draws dropout masks: the run is the same with or without it. Each
    # rank its own dropout stream; batch order is one stream shared by all ranks, each taking its own slice of a batch.
    torch.manual_seed(cfg.seed + 1 + ranks.rank)
    batch_generator = torch.Generator().manual_seed(cfg.seed)  # saved in checkpoints, so resume continues the order
    t_start = time.perf_counter()
    step, best_val, elapsed_before, evals_without_improvement = 0, float("inf"), 0.0, 0
    if resume_from is not None:
        model.load_state_dict(resume_from["model"])
        optimizer.load_state_dict(resume_from["optimizer"])
        scaler.load_state_dict(resume_from["scaler"])
        set_rng_states(resume_from["rng"], device, batch_generator, ranks)
        step, best_val, elapsed_before = resume_from["step"], resume_from["best_val_loss"], resume_from["elapsed_s"]
        evals_without_improvement = resume_from["evals_without_improvement"]
    start_step = step
    stop_reason = f"reached max_iters {cfg.max_iters}"

    metrics_path = out_dir / "metrics.csv"
    if ranks.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        start_metrics(metrics_path, keep_up_to=step if resume_from is not None else None)

    def checkpoint(full: bool) -> dict:
        ckpt = {"model": model.state_dict(), "model_config": asdict(model_cfg), "train_config": asdict(cfg),
                "tokenizer": tokenizer_to_dict(data.tokenizer), "step": step, "best_val_loss": best_val,
                "elapsed_s": elapsed_before + time.perf_counter() - t_start}
        if full:  # what --resume needs on top of the weights
            ckpt.update(optimizer=optimizer.state_dict(), scaler=scaler.state_dict(),
                        rng=rng_states(device, batch_generator, ranks), evals_without_improvement=evals_without_improvement)
        return ckpt

    # Ctrl-C: finish the step in flight (and any evaluation due), save last.pt, then stop. Under torchrun every rank
    # gets the signal, maybe at different steps; they agree on it before acting (agree_on_max below).
    interrupted = []
    previous_handler = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum))

    print(f"model: {model.num_params():,} parameters | {model_cfg.n_layer} layers, {model_cfg.n_head} heads, "
          f"{model_cfg.n_embd} wide, context {T}, dropout {model_cfg.dropout}")
    print(f"data: {len(data.train):,} train / {len(data.val):,} val tokens ({data.tokenizer.kind}, vocab "
          f"{data.tokenizer.vocab_size:,}, {data.n_chars / (len(data.train) + len(data.val)):.2f} characters per token)"
          + (f" | evaluating on the first {n_val_targets:,} val tokens (--eval_tokens)" if len(data.val) > cfg.eval_tokens + 1 else ""))
    split = f" ({ranks.world_size} ranks x {A} micro-steps x {B_micro} sequences)" if B_micro != B else ""
    print(f"batch: {B} sequences x {T} tokens = {B * T:,} tokens per step{split}")
    embedding_share = model_cfg.vocab_size * model_cfg.n_embd / model.num_params()
    if data.tokenizer.kind == "char" and embedding_share > 0.5:
        print(f"warning: the token embedding holds {embedding_share:.0%} of the parameters: with {model_cfg.vocab_size:,} "
              "characters most are rare and their vectors barely train. Consider --tokenizer bpe (any script from 256 "
              "bytes), or a wider model")
    can_plot = importlib.util.find_spec("matplotlib") is not None
    if not can_plot:
        print("matplotlib is not installed, so no loss.png (pip install matplotlib); metrics.csv has the numbers")
    tokens_interval, train_time_interval = 0, 0.0
    tokens_per_s = 0.0
    # With a time budget the step count is open-ended, so the bar counts steps and the postfix counts down seconds.
    bar = tqdm(total=None if cfg.time_budget else cfg.max_iters, initial=step, desc="train", unit="step",
               dynamic_ncols=True, disable=not ranks.is_main)
    try:
        while True:
            elapsed = elapsed_before + time.perf_counter() - t_start
            stop_signal = bool(interrupted)
            if ranks.world_size > 1:  # same clock and same Ctrl-C on every rank, so all take the same lr and decisions
                elapsed, stop_signal = agree_on_max(elapsed, ranks), bool(agree_on_max(float(stop_signal), ranks))
            out_of_time = cfg.time_budget > 0 and elapsed >= cfg.time_budget
            is_eval_step = step % cfg.eval_interval == 0 or step == cfg.max_iters or out_of_time
            if is_eval_step and not (resume_from is not None and step == start_step):
                losses = {"train": evaluate(model, train_x, train_y, B_micro, autocast),
                          "val": evaluate(model, val_x, val_y, B_micro, autocast)}
                if not all(math.isfinite(v) for v in losses.values()):
                    raise non_finite(step)
                val_bpc = losses["val"] / chars_per_target / math.log(2)
                lr = get_lr(step, cfg, elapsed)  # where the schedule stands now
                elapsed = elapsed_before + time.perf_counter() - t_start
                if train_time_interval > 0:
                    tokens_per_s = tokens_interval / train_time_interval
                improved = losses["val"] < best_val
                best_val = min(best_val, losses["val"])
                evals_without_improvement = 0 if improved else evals_without_improvement + 1
                bar.write(f"step {step:>5} | train {losses['train']:.4f} | val {losses['val']:.4f} | "
                          f"val {val_bpc:.3f} bits/char | lr {lr:.2e} | {tokens_per_s:,.0f} tok/s | "
                          f"{elapsed:,.0f}s" + (" | best" if improved else ""))
                last = checkpoint(full=True)  # every rank takes part: it gathers their random states
                if ranks.is_main:
                    append_metrics(metrics_path, [step, losses["train"], losses["val"], val_bpc, lr, tokens_per_s, elapsed])
                    if improved:
                        save_checkpoint(out_dir / "best.pt", checkpoint(full=False))
                    save_checkpoint(out_dir / "last.pt", last)
                    if can_plot:
                        plot_metrics(metrics_path, out_dir / "loss.png", B * T)
                tokens_interval, train_time_interval = 0, 0.0
                if cfg.patience and evals_without_improvement >= cfg.patience:
                    stop_reason = f"stopped early: val loss has not improved for {cfg.patience} evaluations (--patience)"
                    break
            if step >= cfg.max_iters:
                break
            if out_of_time:
                stop_reason = f"spent the time budget of {cfg.time_budget:g}s"
                break
            if stop_signal:  # checked here, after any evaluation due at this step, so resume never skips one
                last = checkpoint(full=True)
                if ranks.is_main:
                    save_checkpoint(out_dir / "last.pt", last)
                launcher = "python" if ranks.world_size == 1 else f"torchrun --standalone --nproc_per_node={ranks.world_size}"
                raise CLIError(f"interrupted at step {step}; saved {out_dir / 'last.pt'}. "
                               f"Continue with: {launcher} train.py --resume --out_dir {cfg.out_dir}", EXIT_INTERRUPTED)

            t0 = time.perf_counter()
            lr = get_lr(step, cfg, elapsed)
            for group in optimizer.param_groups:
                group["lr"] = lr
            # One global batch of B windows; this rank takes its B / world_size of them, in A micro-batches.
            starts = sample_starts(len(data.train), T, B, batch_generator)
            mine = starts[ranks.rank * B_micro * A : (ranks.rank + 1) * B_micro * A]
            micro_batches = [get_batch(data.train, T, part, device) for part in np.split(mine, A)]
            loss = train_step(model, step_model, optimizer, scaler, autocast, micro_batches, cfg.grad_clip)
            step += 1

            log_now = step % cfg.log_interval == 0 or step == cfg.max_iters
            # .item() waits for the device, so it happens only at log points; the time between includes that wait.
            loss_value = (all_reduce_sum(loss) / ranks.world_size).item() if log_now else None
            train_time_interval += time.perf_counter() - t0
            tokens_interval += B * T
            bar.update(1)
            if log_now:
                if not math.isfinite(loss_value):
                    raise non_finite(step)
                postfix = dict(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", tok_s=f"{tokens_interval / train_time_interval:,.0f}")
                if cfg.time_budget:
                    postfix["left"] = f"{max(0.0, cfg.time_budget - elapsed):.0f}s"
                bar.set_postfix(postfix)
    finally:
        bar.close()
        signal.signal(signal.SIGINT, previous_handler)

    return {"model": model, "best_val_loss": best_val, "step": step, "stop_reason": stop_reason,
            "elapsed_s": elapsed_before + time.perf_counter() - t_start}


def non_finite(step: int) -> CLIError:
    """The error for a loss that became NaN or infinite; checkpoints from earlier evals are left as they were."""
    return CLIError(f"the loss became non-finite at step {step}; try a lower --learning_rate or --dtype float32. "
                    "Checkpoints from earlier evaluations are intact", EXIT_FAILED)


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


# ----------------------------------------------------------------------------------------------------------------


def check_writable(out_dir: Path) -> None:
    """Fail before training, not at the first checkpoint, if out_dir cannot be written."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".write-test.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise CLIError(f"cannot write to --out_dir {out_dir} ({e.strerror or e}); pick a folder you can write to") from None


def resolve_configs(given: dict, device: torch.device, resume_from: dict | None):
    """Turn the given flags into (TrainConfig, GPTConfig): preset, then CPU defaults, then explicit flags.

    The GPTConfig's vocab_size is the preset's until the tokenizer is known (main() sets it); on --resume it is the
    checkpoint's, as is the rest of the model's shape.
    """
    train_names = {f.name for f in fields(TrainConfig)}
    model_given = {k: v for k, v in given.items() if k not in train_names}
    if resume_from is not None:
        # The model's shape is fixed by the checkpoint; training settings may be changed (e.g. a longer --max_iters).
        model_cfg = GPTConfig(**resume_from["model_config"])
        saved = {k: v for k, v in resume_from["train_config"].items() if k in train_names}
        saved_cfg = TrainConfig(**saved)
        clashes = [f"--{k} {v} (checkpoint has {getattr(model_cfg, k)})" for k, v in model_given.items() if getattr(model_cfg, k) != v]
        clashes += [f"--{k} {given[k]} (checkpoint has {getattr(saved_cfg, k)})" for k in ("tokenizer", "vocab_size")
                    if k in given and given[k] != getattr(saved_cfg, k)]
        if clashes:
            raise CLIError("--resume cannot change the model's shape or tokenizer: " + ", ".join(clashes))
        cfg = replace(saved_cfg, **{k: v for k, v in given.items() if k in train_names})
        return cfg, model_cfg
    if "vocab_size" in given and given.get("tokenizer", TrainConfig.tokenizer) != "bpe":
        raise CLIError("--vocab_size sets the size of a BPE vocabulary: add --tokenizer bpe "
                       "(a char vocabulary is simply every character in the text)")
    settings = dict(given)
    if device.type == "cpu" and "preset" not in given:
        settings = {**CPU_DEFAULTS, **given}
        print(f"CPU and no --preset: using a quick run ({', '.join(f'{k}={v}' for k, v in CPU_DEFAULTS.items())}); "
              "pass --preset or any of these flags to choose yourself")
    preset = settings.pop("preset", None) or "medium"
    cfg = TrainConfig(**{k: v for k, v in settings.items() if k in train_names}, preset=preset)
    model_cfg = replace(PRESETS[preset], **{k: v for k, v in settings.items() if k not in train_names})
    return cfg, model_cfg


def load_data(cfg: TrainConfig, resume_from: dict | None, data_given: bool) -> TokenData:
    """Download Tiny Shakespeare if it is the corpus and missing, then encode the text (or reuse its cache)."""
    data_path = Path(cfg.data)
    if not data_given and not data_path.exists():
        print(f"downloading Tiny Shakespeare to {data_path} ...")
        download(DATA_URL, data_path, DATA_SHA256)
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else Path(cfg.out_dir) / "cache"
    try:
        tokenizer = tokenizer_from_checkpoint(resume_from) if resume_from else None
        return prepare(data_path, cache_dir, tokenizer=tokenizer, kind=cfg.tokenizer, vocab_size=cfg.vocab_size)
    except DataError as e:
        resumed_char = tokenizer is not None and "not in the vocabulary" in str(e)
        raise CLIError(f"{e}" + ("; --resume needs text in the checkpoint's vocabulary" if resumed_char else "")) from None
    except ValueError as e:  # a tokenizer that cannot be built: no `tokenizers` package, a damaged checkpoint entry
        raise CLIError(str(e)) from None


def main(argv=None) -> int:
    """Command-line entry point: parse flags, join the other ranks if under torchrun, run, report errors."""
    ranks = Ranks()
    try:
        given = parse_flags(argv)
        ranks = start_ranks(given.get("device", "auto"))
        # One voice: under torchrun only rank 0 prints. The others' output goes nowhere; their errors still show.
        with open(os.devnull, "w") as devnull, redirect_stdout(devnull) if not ranks.is_main else nullcontext():
            run(given, ranks)
        return 0
    except CLIError as e:
        # Rank 0 reports what all ranks hit alike (bad flags, bad data); other ranks add only their own failures.
        if ranks.is_main or (e.code == EXIT_FAILED and str(e)):
            print(f"error: {e}" if ranks.is_main else f"error on rank {ranks.rank}: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:  # Ctrl-C outside the training loop (start-up, the closing sample): nothing to save
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run(given: dict, ranks: Ranks) -> None:
    """Pick the device, check the flags, load the data, train, and sample from the result."""
    device, device_reason = pick_device(given.get("device", "auto"))
    if ranks.world_size > 1 and device.type == "cuda":
        device = torch.device("cuda", ranks.local_rank)
    if ranks.world_size > 1 and device.type == "mps":
        raise CLIError("torchrun needs CUDA GPUs or CPUs: torch.distributed cannot use Apple MPS; add --device cpu")
    dtype, dtype_reason = pick_dtype(device, given.get("dtype", "auto"))
    use_compile, compile_reason = pick_compile(device, given.get("compile", "auto"))
    print(f"device: {device} ({device_reason}) | dtype: {str(dtype).removeprefix('torch.')} ({dtype_reason}) | "
          f"compile: {'on' if use_compile else 'off'} ({compile_reason})"
          + (f" | {torch.get_num_threads()} CPU threads" if device.type == "cpu" else "")
          + (f" | {ranks.world_size} ranks ({dist.get_backend()})" if ranks.world_size > 1 else ""))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # TF32 matmuls on Ampere+: much faster, ample precision
        torch.backends.cudnn.allow_tf32 = True

    out_dir = Path(given.get("out_dir", TrainConfig.out_dir))
    resume_from = None
    if given.get("resume"):
        resume_from = load_checkpoint(out_dir / "last.pt")
        if "optimizer" not in resume_from:
            raise CLIError(f"{out_dir / 'last.pt'} has no optimizer state, so it cannot be resumed")
    elif (out_dir / "last.pt").exists() and not given.get("overwrite"):
        raise CLIError(f"{out_dir} already holds a run; continue it with --resume, start over with --overwrite, "
                       "or pick another --out_dir")

    data_given = bool(given.get("data"))
    if not data_given:
        given["data"] = resume_from["train_config"]["data"] if resume_from else str(DEFAULT_DATA)
    cfg, model_cfg = resolve_configs(given, device, resume_from)
    validate(cfg, model_cfg, ranks.world_size)

    # Rank 0 downloads and encodes; the others wait, then read its cache. Everyone learns if rank 0 failed.
    data, failure = None, None
    if ranks.is_main:
        try:
            check_writable(out_dir)
            data = load_data(cfg, resume_from, data_given)
        except CLIError as e:
            failure = e
    if ranks.world_size > 1:
        code = int(agree_on_max(failure.code if failure else 0, ranks))  # also where the others wait for rank 0
        if code and failure is None:
            failure = CLIError("", code)  # rank 0 has said what went wrong
    if failure:
        raise failure
    if data is None:
        data = load_data(cfg, resume_from, data_given)
    if resume_from is None:
        model_cfg = replace(model_cfg, vocab_size=data.tokenizer.vocab_size)
    T = model_cfg.block_size
    if len(data.val) < T + 1 or len(data.train) < T + 1:
        raise CLIError(f"data file {cfg.data} gives {len(data.train):,} train and {len(data.val):,} val tokens; with "
                       f"block_size {T} each split needs at least {T + 1} (one window). Use more text or a smaller --block_size")

    if resume_from:
        print(f"resuming {out_dir / 'last.pt'} at step {resume_from['step']} of {cfg.max_iters}")
    try:
        result = train(cfg, model_cfg, data, device, dtype, resume_from, use_compile, ranks)
    except (RuntimeError, MemoryError) as e:  # torch.cuda.OutOfMemoryError is a RuntimeError; MPS raises a plain one
        if not (isinstance(e, (torch.cuda.OutOfMemoryError, MemoryError)) or "out of memory" in str(e).lower()):
            raise
        raise CLIError(f"ran out of memory on {device}: lower --batch_size (now {cfg.batch_size}) or --block_size "
                       f"(now {model_cfg.block_size}), raise --grad_accum_steps (now {cfg.grad_accum_steps}; same "
                       "batch, less memory), or pick a smaller --preset. Checkpoints from earlier evaluations are intact",
                       EXIT_FAILED) from None

    print(f"done: {result['step']} steps in {result['elapsed_s']:,.0f}s, {result['stop_reason']} | best val loss "
          f"{result['best_val_loss']:.4f} (checkpoint {out_dir / 'best.pt'}; plot {out_dir / 'loss.png'})")
    if cfg.sample_chars and ranks.is_main:
        model = result["model"].eval()
        tokenizer = data.tokenizer
        start_ids = tokenizer.encode("\n").tolist() if not tokenizer.unknown("\n") else [0]  # begin as after a line
        start = torch.tensor([start_ids], dtype=torch.long, device=device)
        generator = torch.Generator().manual_seed(cfg.seed)
        out = model.generate(start, cfg.sample_chars, temperature=0.8, top_k=40, generator=generator)
        print("sample from the final model:\n" + tokenizer.decode(out[0, len(start_ids):].tolist()))


if __name__ == "__main__":
    sys.exit(main())
