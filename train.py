"""Train a GPT on Tiny Shakespeare (or any UTF-8 text file), one character or one BPE token at a time.

    python train.py                      # medium on a GPU / Apple MPS; a 5-minute modern-recipe run on a CPU
    python train.py --preset small --max_iters 2000
    python train.py --data my.txt --tokenizer bpe --vocab_size 1024
    python train.py --preset small --recipe modern      # RoPE, ReLU² and Muon on top of GPT-2
    python train.py --position rope --optimizer muon    # or any one piece on top of GPT-2
    python train.py --resume             # continue out/last.pt where it stopped
    torchrun --standalone --nproc_per_node=4 train.py    # data parallel over 4 GPUs

Read top to bottom: the training settings, the command line, the data download, the learning-rate schedule, the
run's state, then `train()` — the loop itself — and `main()`. What other scripts share with this one lives in
modules named for it: precision.py (device, dtype, compile), step.py (batches, AdamW, one optimizer step),
evaluation.py, checkpoint.py, distributed.py (torchrun), metrics.py (metrics.csv, train_log.csv, loss.png), cli.py.
"""

import hashlib
import importlib.util
import math
import os
import re
import signal
import sys
import time
import urllib.error
import urllib.request
from contextlib import nullcontext, redirect_stdout
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from checkpoint import (load_checkpoint, restore_optimizer, restore_scaler, rng_states, save_checkpoint,
                        set_rng_states)
from cli import EXIT_FAILED, EXIT_INTERRUPTED, CLIError, FlagParser, add_dataclass_flags
from dataset import DATA_SHA256, DATA_URL, DEFAULT_DATA, DataError, TokenData, prepare, write_atomically
from distributed import Ranks, agree, all_reduce_sum, start_ranks, stop_ranks, wait_for_all
from evaluation import EVAL_BATCH_SIZE, count_chars, eval_windows, evaluate, window_batches
from metrics import append_metrics, append_train_log, plot_metrics, start_metrics, start_train_log
from model import GPT, PRESETS, GPTConfig
from precision import Precision, make_precision
from step import MUON_TORCH, RECIPES, compile_for_training, configure_optimizer, get_batch, sample_starts, train_step
from tokenizer import check_bpe_vocab_size, tokenizer_from_checkpoint, tokenizer_to_dict


@dataclass
class TrainConfig:
    """The hyperparameters of a training run: everything but the architecture. Each field is also a command-line flag,
    and the whole config is saved in checkpoints."""

    data: str | None = field(default=None, metadata={"help": "UTF-8 text file to train on, of any size", "default_help": "Tiny Shakespeare in data/, downloaded on first use"})
    out_dir: str = field(default="out", metadata={"help": "folder for checkpoints, metrics.csv, train_log.csv and loss.png"})
    cache_dir: str | None = field(default=None, metadata={"help": "folder for the encoded token files, reused while the text and tokenizer are unchanged", "default_help": "out_dir/cache"})
    tokenizer: str = field(default="char", metadata={"help": "char: one token per character; bpe: byte-level BPE trained on the train split", "choices": ["char", "bpe"]})
    vocab_size: int = field(default=1024, metadata={"help": "BPE vocabulary size, the 256 bytes included (--tokenizer bpe only)"})
    preset: str | None = field(default=None, metadata={"help": "model size", "default_help": "medium on GPU/MPS; a quick run on CPU", "choices": list(PRESETS)})
    batch_size: int = field(default=64, metadata={"help": "sequences per optimizer step, over all ranks and micro-steps (the global batch)"})
    grad_accum_steps: int = field(default=1, metadata={"help": "split each step's batch into this many micro-steps, to fit memory; same result"})
    max_iters: int = field(default=5000, metadata={"help": "optimizer steps in the whole run"})
    time_budget: float = field(default=0.0, metadata={"help": "seconds of training; the run and its LR schedule end when they are spent (0: no limit)"})
    recipe: str = field(default="gpt2", metadata={"help": "a bundle of architecture pieces and optimizer (RECIPES in step.py); flags given on their own override it", "choices": ["gpt2", "modern"]})
    optimizer: str = field(default="adamw", metadata={"help": "adamw for everything, or muon for the weight matrices inside the blocks and AdamW for the rest", "choices": ["adamw", "muon"]})
    learning_rate: float = field(default=1e-3, metadata={"help": "peak learning rate, reached at the end of warmup"})
    muon_lr: float | None = field(default=None, metadata={"help": "peak learning rate of the Muon group (--optimizer muon), in AdamW's units; scheduled like --learning_rate", "default_help": "--learning_rate"})
    min_lr: float = field(default=1e-4, metadata={"help": "learning rate at the end of the cosine decay"})
    warmup_iters: int = field(default=100, metadata={"help": "steps of linear warmup from near 0 to learning_rate"})
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW weight decay, applied to 2-D weights only"})
    beta1: float = field(default=0.9, metadata={"help": "AdamW beta1"})
    beta2: float = field(default=0.99, metadata={"help": "AdamW beta2"})
    grad_clip: float = field(default=1.0, metadata={"help": "clip the gradient norm to this (0 turns clipping off)"})
    eval_interval: int = field(default=250, metadata={"help": "evaluate and checkpoint every this many steps"})
    eval_tokens: int = field(default=500_000, metadata={"help": "evaluate on at most this many val tokens (the start of the val split) and as many train tokens"})
    patience: int = field(default=0, metadata={"help": "stop after this many evaluations without a new best val loss (0: never)"})
    log_interval: int = field(default=10, metadata={"help": "every this many steps, log the mean training loss since the last log point (progress bar and train_log.csv)"})
    sample_chars: int = field(default=300, metadata={"help": "tokens (characters, for char) to sample at the end of the run (0: none)"})
    seed: int = field(default=1337, metadata={"help": "random seed. A run of --max_iters steps repeats exactly on a CPU with the same seed and flags; a --time_budget run (the CPU default) does not, since the clock ends it and sets its learning rate"})


@dataclass
class RunControls:
    """How this process runs, not what it trains: flags like the others, but never saved as the run's settings, so
    a run saved on one device resumes on another with other controls."""

    resume: bool = field(default=False, metadata={"help": "continue the run in out_dir from last.pt"})
    overwrite: bool = field(default=False, metadata={"help": "start a new run even if out_dir already holds one"})
    device: str = field(default="auto", metadata={"help": "auto picks cuda, then mps, then cpu", "choices": ["auto", "cpu", "cuda", "mps"]})
    dtype: str = field(default="auto", metadata={"help": "auto: bfloat16 on GPUs that have it, float16 on older GPUs, float32 elsewhere", "choices": ["auto", "float32", "bfloat16", "float16"]})
    compile: str = field(default="auto", metadata={"help": "torch.compile the training step: auto (CUDA with Triton only), on, off", "choices": ["auto", "on", "off"]})


# What `python train.py` runs when the device is a CPU and no --preset was given: the medium preset would take about a
# day there. Five minutes of the tiny preset instead (its context of 256 included), with the modern recipe, which beat
# GPT-2 over the same 300 s back to back (docs/ablate.sh cpu_default, docs/BENCHMARKS.md). Batch 8 x 256 tied for
# best among the modern recipe's batch and context sizes tried there; AdamW's 4e-3 won GPT-2's 100-second runs
# (docs/tune_cpu.sh) and Muon's 2e-3 the 300-s ones (docs/ablate.sh targets_muon_lr). Flags override.
CPU_DEFAULTS = {"preset": "tiny", "recipe": "modern", "batch_size": 8, "learning_rate": 4e-3, "muon_lr": 2e-3,
                "warmup_iters": 50, "time_budget": 300.0, "max_iters": 100_000, "eval_interval": 1000}
# With --recipe gpt2 (or a torch without Muon, which the quick run then falls back to), GPT-2's own best: its learned
# position table trains far slower at batch 8 x 256 (docs/BENCHMARKS.md), and batch 32 x 64 won its 100-s runs.
CPU_DEFAULTS_GPT2 = {"batch_size": 32, "block_size": 64}


# ----------------------------------------------------------------------------------------------------------------
# Command line: flags are generated from the fields of TrainConfig, RunControls and GPTConfig, help text and all.

MODEL_FLAGS = [f for f in fields(GPTConfig) if f.name != "vocab_size"]  # the vocabulary comes from the data


def parse_flags(argv) -> dict:
    """Parse argv into a dict holding only the flags the user actually gave."""
    parser = FlagParser(description="Train a character-level GPT.")
    add_dataclass_flags(parser.add_argument_group("training"), fields(TrainConfig),
                        lambda f: f"default: {f.metadata.get('default_help', f.default)}")
    add_dataclass_flags(parser.add_argument_group("running (not saved with the run)"), fields(RunControls),
                        lambda f: f"default: {f.default}")
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
    try:
        model_cfg.check()
    except ValueError as e:  # its message names the fields, which are the flags
        raise CLIError(re.sub(r"\b(n_embd|n_head|n_kv_head|position)\b", r"--\1", str(e))) from None
    if cfg.optimizer == "muon" and not hasattr(torch.optim, "Muon"):
        raise CLIError(f"--optimizer muon needs torch {MUON_TORCH} or newer (this is torch {torch.__version__}); "
                       "upgrade torch or use --optimizer adamw")
    if cfg.muon_lr is not None and not cfg.muon_lr > 0:
        raise CLIError(f"--muon_lr must be positive, got {cfg.muon_lr}")
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
# Data: the text is encoded once into a file of token ids (dataset.py), which we read as a memory map: a big corpus
# takes no more allocated memory than Tiny Shakespeare (docs/BENCHMARKS.md). Training batches are random windows of
# it (step.get_batch).


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
# The training loop


@dataclass
class RunState:
    """What changes as a run goes on. Checkpoints save it and --resume restores it."""

    step: int = 0  # optimizer steps taken
    best_val_loss: float = math.inf
    evals_without_improvement: int = 0  # for --patience
    elapsed_s: float = 0.0  # seconds of training so far, over every resume (start-up and compiling not counted)


def train(cfg: TrainConfig, model_cfg: GPTConfig, data: TokenData, precision: Precision,
          resume_from: dict | None = None, ranks: Ranks = Ranks()) -> dict:
    """Train a GPT on the token ids in data, evaluating and checkpointing as configured. Returns a summary dict."""
    device, out_dir = precision.device, Path(cfg.out_dir)
    B, T, A = cfg.batch_size, model_cfg.block_size, cfg.grad_accum_steps
    B_micro = B // (ranks.world_size * A)  # sequences per forward pass on this rank (validate() checked it divides)

    # The model, its optimizer and loss scaler, and the run's state: fresh, or as last.pt left them.
    torch.manual_seed(cfg.seed)  # the initial weights: the same on every rank
    model = GPT(model_cfg).to(device)
    optimizers = configure_optimizer(model, cfg.learning_rate, cfg.weight_decay, (cfg.beta1, cfg.beta2), device,
                                     kind=cfg.optimizer, muon_lr=cfg.muon_lr)
    scaler = precision.new_scaler()  # float16 only: scales the loss up so small gradients survive
    state = RunState()
    if resume_from is not None:
        model.load_state_dict(resume_from["model"])
        restore_optimizer(optimizers[0], resume_from["optimizer"])
        if cfg.optimizer == "muon":
            restore_optimizer(optimizers[1], resume_from["muon"])
        if not restore_scaler(scaler, resume_from["scaler"]) and scaler.is_enabled():
            print("the checkpoint was trained without loss scaling; float16 here starts a fresh loss scaler")
        state = RunState(**{f.name: resume_from[f.name] for f in fields(RunState)})
    resumed_at = state.step if resume_from is not None else None

    # Several ranks: DDP copies rank 0's weights to every rank now, and from here on averages gradients during
    # backward(). Compiling comes after, around DDP, so that the compiled backward overlaps DDP's all-reduce.
    step_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None) if ranks.launched else model
    if precision.compile:
        warm_starts = sample_starts(len(data.train), T, B_micro, torch.Generator().manual_seed(cfg.seed))
        step_model = compile_for_training(step_model, *get_batch(data.train, T, warm_starts, device), precision, A)

    # Random streams, seeded after compiling (whose warm-up draws dropout masks), so a run is the same with or without
    # it: dropout per rank, and the batch order, one stream shared by all ranks, each taking its own slice of a batch.
    torch.manual_seed(cfg.seed + 1 + ranks.rank)
    batch_generator = torch.Generator().manual_seed(cfg.seed)  # saved in checkpoints, so resume continues the order
    if resume_from is not None:
        set_rng_states(resume_from["rng"], device, batch_generator, ranks)

    # Evaluation: the start of the val split (all of it for Tiny Shakespeare), and a fixed sample of as many train
    # windows. The same every time, so successive evaluations compare.
    val_ids = data.val[: cfg.eval_tokens + 1]
    n_val_targets = len(val_ids) - 1
    # Bits per character: the loss in a unit that does not depend on the tokenizer (a BPE token holds several).
    chars_per_target = count_chars(data.tokenizer, val_ids[1:]) / n_val_targets
    train_starts = sample_starts(len(data.train), T, math.ceil(n_val_targets / T), torch.Generator().manual_seed(cfg.seed))
    train_x, train_y = get_batch(data.train, T, train_starts, torch.device("cpu"))

    def evaluate_now() -> dict:
        val_batches = eval_windows(val_ids, T, EVAL_BATCH_SIZE, ranks.rank, ranks.world_size)
        return {"train": evaluate(model, window_batches(train_x, train_y, EVAL_BATCH_SIZE, ranks), precision, ranks),
                "val": evaluate(model, val_batches, precision, ranks)}

    def checkpoint(full: bool) -> dict:
        ckpt = {"model": model.state_dict(), "model_config": asdict(model_cfg), "train_config": asdict(cfg),
                "tokenizer": tokenizer_to_dict(data.tokenizer), **asdict(state)}
        if full:  # what --resume needs on top of the weights; every rank takes part (their random states are gathered)
            ckpt.update(optimizer=optimizers[0].state_dict(), scaler=scaler.state_dict(),
                        rng=rng_states(device, batch_generator, ranks))
            if cfg.optimizer == "muon":
                ckpt["muon"] = optimizers[1].state_dict()
        return ckpt

    metrics_path, train_log_path = out_dir / "metrics.csv", out_dir / "train_log.csv"
    if ranks.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        start_metrics(metrics_path, keep_up_to=resumed_at)
        start_train_log(train_log_path, keep_up_to=resumed_at)
    print(f"model: {model.num_params():,} parameters | {model_cfg.n_layer} layers, {model_cfg.n_head} heads, "
          f"{model_cfg.n_embd} wide, context {T}, dropout {model_cfg.dropout} | recipe {cfg.recipe}: "
          f"{model_cfg.pieces()}")
    print("optimizer: " + " + ".join(
        f"{type(o).__name__} ({sum(p.numel() for g in o.param_groups for p in g['params']):,} parameters, peak lr "
        f"{o.param_groups[0]['peak_lr']:g})" for o in optimizers))
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
        print("matplotlib is not installed, so no loss.png (pip install matplotlib); metrics.csv and train_log.csv "
              "have the numbers")

    # The train log: the lr each step used, and the mean of the steps' losses since the last write, which is less
    # noisy than one batch's loss. The losses add up on the device, so no step waits for it; .item() (a wait) comes
    # only when the rows are written: at log points, and wherever last.pt is saved, so that train_log.csv always
    # holds every step last.pt has taken and a resumed run neither misses a row nor repeats one.
    pending_lrs, loss_sum = [], torch.zeros((), device=device)  # [(step, lr)] not yet written, and their losses' sum

    def write_train_log() -> float:
        """Append the pending steps to train_log.csv with their mean loss over every rank; return that loss."""
        mean_loss = (all_reduce_sum(loss_sum) / (len(pending_lrs) * ranks.world_size)).item()
        if ranks.is_main:
            append_train_log(train_log_path, pending_lrs, mean_loss)
        pending_lrs.clear()
        loss_sum.zero_()
        return mean_loss

    # Ctrl-C: finish the step in flight (and any evaluation due), save last.pt, then stop. Under torchrun every rank
    # gets the signal, maybe at different steps; they agree on it before acting.
    interrupted = []
    previous_handler = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum))
    t_start, elapsed_before = time.perf_counter(), state.elapsed_s
    tokens_interval, train_time_interval, tokens_per_s = 0, 0.0, 0.0
    # With a time budget the step count is open-ended, so the bar counts steps and the postfix counts down seconds.
    bar = tqdm(total=None if cfg.time_budget else cfg.max_iters, initial=state.step, desc="train", unit="step",
               dynamic_ncols=True, disable=not ranks.is_main)
    try:
        while True:
            # One host-side agreement per step: every rank takes the slowest clock and anyone's Ctrl-C, so all of
            # them use the same learning rate and stop at the same step.
            elapsed, stop_signal = agree([elapsed_before + time.perf_counter() - t_start, float(bool(interrupted))], ranks)
            state.elapsed_s = elapsed
            out_of_time = cfg.time_budget > 0 and elapsed >= cfg.time_budget

            # Evaluate and checkpoint (not again at the step a resumed run starts from: last.pt is that evaluation).
            is_eval_step = state.step % cfg.eval_interval == 0 or state.step == cfg.max_iters or out_of_time
            if is_eval_step and state.step != resumed_at:
                if pending_lrs:  # the steps since the last log point: logged before last.pt, which holds them, is saved
                    if not math.isfinite(write_train_log()):
                        raise non_finite(state.step)
                losses = evaluate_now()
                if not all(math.isfinite(v) for v in losses.values()):
                    raise non_finite(state.step)
                val_bpc = losses["val"] / chars_per_target / math.log(2)
                lr = get_lr(state.step, cfg, elapsed)  # where the schedule stands now
                state.elapsed_s = elapsed_before + time.perf_counter() - t_start
                if train_time_interval > 0:
                    tokens_per_s = tokens_interval / train_time_interval
                improved = losses["val"] < state.best_val_loss
                state.best_val_loss = min(state.best_val_loss, losses["val"])
                state.evals_without_improvement = 0 if improved else state.evals_without_improvement + 1
                bar.write(f"step {state.step:>5} | train {losses['train']:.4f} | val {losses['val']:.4f} | "
                          f"val {val_bpc:.3f} bits/char | lr {lr:.2e} | {tokens_per_s:,.0f} tok/s | "
                          f"{state.elapsed_s:,.0f}s" + (" | best" if improved else ""))
                last = checkpoint(full=True)
                if ranks.is_main:
                    append_metrics(metrics_path, [state.step, losses["train"], losses["val"], val_bpc, lr, tokens_per_s,
                                                  state.elapsed_s])
                    if improved:
                        save_checkpoint(out_dir / "best.pt", checkpoint(full=False))
                    save_checkpoint(out_dir / "last.pt", last)
                    if can_plot:
                        plot_metrics(metrics_path, out_dir / "loss.png", B * T)
                tokens_interval, train_time_interval = 0, 0.0
                if cfg.patience and state.evals_without_improvement >= cfg.patience:
                    stop_reason = f"stopped early: val loss has not improved for {cfg.patience} evaluations (--patience)"
                    break

            # Stop?
            if state.step >= cfg.max_iters:
                stop_reason = f"reached max_iters {cfg.max_iters}"
                break
            if out_of_time:
                stop_reason = f"spent the time budget of {cfg.time_budget:g}s"
                break
            if stop_signal:  # checked here, after any evaluation due at this step, so resume never skips one
                if pending_lrs:  # as at an evaluation: the log holds every step last.pt has taken
                    write_train_log()
                last = checkpoint(full=True)
                if ranks.is_main:
                    save_checkpoint(out_dir / "last.pt", last)
                launcher = "python" if not ranks.launched else f"torchrun --standalone --nproc_per_node={ranks.world_size}"
                raise CLIError(f"interrupted at step {state.step}; saved {out_dir / 'last.pt'}. "
                               f"Continue with: {launcher} train.py --resume --out_dir {cfg.out_dir}", EXIT_INTERRUPTED)

            # One optimizer step. One global batch of B windows; this rank takes its B / world_size, in A micro-batches.
            t0 = time.perf_counter()
            lr = get_lr(state.step, cfg, elapsed)
            for optimizer in optimizers:  # every group follows the schedule, from its own peak
                for group in optimizer.param_groups:
                    group["lr"] = group["peak_lr"] * lr / cfg.learning_rate
            starts = sample_starts(len(data.train), T, B, batch_generator)
            mine = starts[ranks.rank * B_micro * A : (ranks.rank + 1) * B_micro * A]
            micro_batches = [get_batch(data.train, T, part, device) for part in np.split(mine, A)]
            loss = train_step(model, step_model, optimizers, scaler, precision, micro_batches, cfg.grad_clip)
            state.step += 1
            pending_lrs.append((state.step, lr))  # the lr this step used (with a time budget, the clock chose it)
            loss_sum += loss  # on the device: adding does not wait for the step to finish

            # .item() waits for the device, so it happens only at log points; the time between includes that wait.
            log_now = state.step % cfg.log_interval == 0 or state.step == cfg.max_iters
            loss_value = write_train_log() if log_now else None
            train_time_interval += time.perf_counter() - t0
            tokens_interval += B * T
            bar.update(1)
            if log_now:
                if not math.isfinite(loss_value):
                    raise non_finite(state.step)
                postfix = dict(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", tok_s=f"{tokens_interval / train_time_interval:,.0f}")
                if cfg.time_budget:
                    postfix["left"] = f"{max(0.0, cfg.time_budget - elapsed):.0f}s"
                bar.set_postfix(postfix)
    finally:
        bar.close()
        signal.signal(signal.SIGINT, previous_handler)

    return {"model": model, "best_val_loss": state.best_val_loss, "step": state.step, "stop_reason": stop_reason,
            "elapsed_s": elapsed_before + time.perf_counter() - t_start}


def non_finite(step: int) -> CLIError:
    """The error for a loss that became NaN or infinite; checkpoints from earlier evals are left as they were."""
    return CLIError(f"the loss became non-finite at step {step}; try a lower --learning_rate or --dtype float32. "
                    "Checkpoints from earlier evaluations are intact", EXIT_FAILED)


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
        clashes += [f"--{k} {given[k]} (checkpoint has {getattr(saved_cfg, k)})"
                    for k in ("tokenizer", "vocab_size", "recipe", "optimizer")
                    if k in given and given[k] != getattr(saved_cfg, k)]
        if clashes:
            raise CLIError("--resume cannot change the model's shape, tokenizer or optimizer: " + ", ".join(clashes))
        cfg = replace(saved_cfg, **{k: v for k, v in given.items() if k in train_names})
        return cfg, model_cfg
    if "vocab_size" in given and given.get("tokenizer", TrainConfig.tokenizer) != "bpe":
        raise CLIError("--vocab_size sets the size of a BPE vocabulary: add --tokenizer bpe "
                       "(a char vocabulary is simply every character in the text)")
    settings = dict(given)
    if device.type == "cpu" and "preset" not in given:
        recipe = given.get("recipe", CPU_DEFAULTS["recipe"])
        if "recipe" not in given and not hasattr(torch.optim, "Muon"):  # the modern recipe trains with Muon
            recipe = "gpt2"
            print(f"torch {torch.__version__} has no Muon optimizer (torch {MUON_TORCH} or newer has): "
                  "the quick run falls back to the gpt2 recipe")
        defaults = {**CPU_DEFAULTS, "recipe": recipe, **(CPU_DEFAULTS_GPT2 if recipe == "gpt2" else {})}
        settings = {**defaults, **given}
        print(f"CPU and no --preset: using a quick run ({', '.join(f'{k}={v}' for k, v in defaults.items())}); "
              "pass --preset or any of these flags to choose yourself")
    preset = settings.pop("preset", None) or "medium"
    settings = {**RECIPES[settings.get("recipe", TrainConfig.recipe)], **settings}  # flags given win over the recipe
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
        ranks = start_ranks(given.get("device", RunControls.device))
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
        stop_ranks()


def run(given: dict, ranks: Ranks) -> None:
    """Pick the device and precision, check the flags, load the data, train, and sample from the result."""
    control_names = {f.name for f in fields(RunControls)}
    controls = RunControls(**{k: v for k, v in given.items() if k in control_names})
    given = {k: v for k, v in given.items() if k not in control_names}  # what is left are the run's settings
    precision = make_precision(controls.device, controls.dtype, controls.compile,
                               local_rank=ranks.local_rank if ranks.launched else None)
    device = precision.device
    if ranks.launched and device.type == "mps":
        raise CLIError("torchrun needs CUDA GPUs or CPUs: torch.distributed cannot use Apple MPS; add --device cpu")
    print(precision.describe()
          + (f" | {torch.get_num_threads()} CPU threads" if device.type == "cpu" else "")
          + (f" | {ranks.world_size} ranks ({torch.distributed.get_backend()})" if ranks.launched else ""))
    precision.apply()

    out_dir = Path(given.get("out_dir", TrainConfig.out_dir))
    resume_from = None
    if controls.resume:
        resume_from = load_checkpoint(out_dir / "last.pt")
        if "optimizer" not in resume_from:
            raise CLIError(f"{out_dir / 'last.pt'} has no optimizer state, so it cannot be resumed")
    elif (out_dir / "last.pt").exists() and not controls.overwrite:
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
    if ranks.launched:
        code = int(agree([failure.code if failure else 0], ranks)[0])  # also where the others wait for rank 0
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
        result = train(cfg, model_cfg, data, precision, resume_from, ranks)
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
    # The ranks leave together: a rank that tore the process group down while rank 0 was still sampling has been seen
    # to abort (gloo, 2 CPU ranks).
    wait_for_all(ranks)


if __name__ == "__main__":
    sys.exit(main())
