"""Train a GPT-2-style model on Tiny Shakespeare (or any UTF-8 text), one character at a time.

    python train.py                          # GPU / Apple MPS: the medium preset; CPU: a 5-minute tiny run
    python train.py --preset small --max_iters 2000
    python train.py --resume                 # continue out/last.pt where it stopped
    python train.py --recipe modern          # the 2026 pieces: RoPE, ReLU² and Muon (extras/modern.py)
    python train.py --data my.txt --tokenizer bpe --vocab_size 1024
    torchrun --standalone --nproc_per_node=4 train.py    # data parallel over 4 GPUs (extras/distributed.py)

Read top to bottom: the training settings, the learning-rate schedule, the loop (`train()`), then the command
line that sets it all up (`main()`). The loop is: a batch, forward, backward, clip, step, log; every
eval_interval steps, evaluate and save a checkpoint. What it leans on lives in extras/, one file per concern
(extras/__init__.py lists them): the data and its token cache, the device and dtype, evaluation, checkpoints,
and the torchrun ranks.
"""

import importlib.util
import math
import os
import re
import sys
import time
from contextlib import nullcontext, redirect_stdout
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch
from tqdm import tqdm

from extras.checkpoint import (check_writable, load_checkpoint, make_checkpoint, restore_training, rng_states,
                               save_checkpoint, set_rng_states)
from extras.cli import EXIT_FAILED, EXIT_INTERRUPTED, CLIError, FlagParser, add_dataclass_flags
from extras.control import RunClock, resume_command
from extras.dataset import DATA_SHA256, DATA_URL, DEFAULT_DATA, DataError, TokenData, download, prepare
from extras.distributed import Ranks, agree, start_ranks, stop_ranks, wait_for_all, wrap_for_ranks
from extras.evaluation import EvalSets
from extras.metrics import TrainLog, append_metrics, plot_metrics, start_metrics
from extras.precision import Precision, make_precision
from extras.step import compile_for_training, configure_optimizer, get_batch, sample_starts, skip_grad_sync
from extras.tokenizer import check_bpe_vocab_size, tokenizer_from_checkpoint
from model import GPT, PRESETS, GPTConfig


def _help(text: str, **more) -> dict:
    return {"metadata": {"help": text, **more}}


@dataclass
class TrainConfig:
    """The hyperparameters of a training run: everything but the architecture. Each field is also a
    command-line flag, and the whole config is saved in checkpoints."""

    data: str | None = field(default=None, **_help(
        "UTF-8 text file to train on, of any size",
        default_help="Tiny Shakespeare in data/, downloaded on first use"))
    out_dir: str = field(default="out", **_help(
        "folder for checkpoints, metrics.csv, train_log.csv and loss.png"))
    cache_dir: str | None = field(default=None, **_help(
        "folder for the encoded token files, reused while the text and tokenizer are unchanged",
        default_help="out_dir/cache"))
    tokenizer: str = field(default="char", **_help(
        "char: one token per character; bpe: byte-level BPE trained on the train split (extras/bpe.py)",
        choices=["char", "bpe"]))
    vocab_size: int = field(default=1024, **_help(
        "BPE vocabulary size, the 256 bytes included (--tokenizer bpe)"))
    preset: str | None = field(default=None, **_help(
        "model size", default_help="medium on GPU/MPS; a quick run on CPU", choices=list(PRESETS)))
    batch_size: int = field(default=64, **_help(
        "sequences per optimizer step, over all ranks and micro-steps (the global batch)"))
    grad_accum_steps: int = field(default=1, **_help(
        "split each step's batch into this many micro-steps, to fit memory; same result"))
    max_iters: int = field(default=5000, **_help("optimizer steps in the whole run"))
    time_budget: float = field(default=0.0, **_help(
        "seconds of training; the run and its LR schedule end when they are spent (0: no limit)"))
    recipe: str = field(default="gpt2", **_help(
        "gpt2, or modern: the 2026 pieces measured to pay (RECIPES in extras/modern.py); flags given on "
        "their own override it", choices=["gpt2", "modern"]))
    optimizer: str = field(default="adamw", **_help(
        "adamw for everything, or muon for the weight matrices inside the blocks and AdamW for the rest",
        choices=["adamw", "muon"]))
    learning_rate: float = field(default=1e-3, **_help("peak learning rate, reached at the end of warmup"))
    muon_lr: float | None = field(default=None, **_help(
        "peak learning rate of the Muon group (--optimizer muon), in AdamW's units",
        default_help="--learning_rate"))
    min_lr: float = field(default=1e-4, **_help("learning rate at the end of the cosine decay"))
    warmup_iters: int = field(default=100, **_help("steps of linear warmup from near 0 to learning_rate"))
    weight_decay: float = field(default=0.1, **_help("AdamW weight decay, applied to 2-D weights only"))
    beta1: float = field(default=0.9, **_help("AdamW beta1"))
    beta2: float = field(default=0.99, **_help("AdamW beta2"))
    grad_clip: float = field(default=1.0, **_help("clip the gradient norm to this (0 turns clipping off)"))
    eval_interval: int = field(default=250, **_help("evaluate and checkpoint every this many steps"))
    eval_tokens: int = field(default=500_000, **_help(
        "evaluate on at most this many val tokens (the start of the val split) and as many train tokens"))
    patience: int = field(default=0, **_help(
        "stop after this many evaluations without a new best val loss (0: never)"))
    log_interval: int = field(default=10, **_help(
        "every this many steps, log the mean training loss since the last log point (progress bar, "
        "train_log.csv)"))
    sample_chars: int = field(default=300, **_help(
        "tokens (characters, for char) to sample at the end of the run (0: none)"))
    seed: int = field(default=1337, **_help(
        "random seed. A run of --max_iters steps repeats exactly on a CPU with the same seed and flags; a "
        "--time_budget run (the CPU default) does not, since the clock ends it and sets its learning rate"))


@dataclass
class RunControls:
    """How this process runs, not what it trains: flags like the others, but never saved as the run's
    settings, so a run saved on one device resumes on another with other controls."""

    resume: bool = field(default=False, **_help("continue the run in out_dir from last.pt"))
    overwrite: bool = field(default=False, **_help("start a new run even if out_dir already holds one"))
    device: str = field(default="auto", **_help(
        "auto picks cuda, then mps, then cpu", choices=["auto", "cpu", "cuda", "mps"]))
    dtype: str = field(default="auto", **_help(
        "auto: bfloat16 on GPUs that have it, float16 on older GPUs, float32 elsewhere",
        choices=["auto", "float32", "bfloat16", "float16"]))
    compile: str = field(default="auto", **_help(
        "torch.compile the training step: auto (CUDA with Triton only), on, off",
        choices=["auto", "on", "off"]))


# What `python train.py` runs on a CPU when no --preset is given: the medium preset would take about a day
# there. Five minutes of the tiny preset instead, GPT-2 at the settings that did best in its 100-s runs
# (docs/tune_cpu.sh: batch 32 x 64, lr 4e-3) and over 300 s (docs/ablate.sh cpu_default; docs/BENCHMARKS.md).
# Flags override.
CPU_DEFAULTS = {"preset": "tiny", "recipe": "gpt2", "batch_size": 32, "block_size": 64, "learning_rate": 4e-3,
                "warmup_iters": 50, "time_budget": 300.0, "max_iters": 100_000, "eval_interval": 1000}
# With --recipe modern, the modern recipe's own best in the same five minutes: RoPE lets the context grow to
# 256 (batch 8 x 256), where GPT-2's position table trains worse, and Muon's lr 2e-3 won its 300-s runs.
CPU_DEFAULTS_MODERN = {"batch_size": 8, "block_size": 256, "muon_lr": 2e-3}


# ------------------------------------------------------------------------------------------------------------
# Learning rate: linear warmup, then cosine decay to min_lr.


def get_lr(step: int, cfg: TrainConfig, elapsed: float = 0.0) -> float:
    """Learning rate for optimizer step `step` (0-based), `elapsed` seconds into the run.

    With a time budget, the cosine follows whichever is further along, steps or time, so the model is fully
    annealed (at min_lr) when the budget runs out instead of being cut off mid-schedule.
    """
    if step < cfg.warmup_iters:
        # never 0, reaches the peak on the last warmup step
        return cfg.learning_rate * (step + 1) / cfg.warmup_iters
    progress = (step - cfg.warmup_iters) / (cfg.max_iters - cfg.warmup_iters) if step < cfg.max_iters else 1.0
    if cfg.time_budget:
        progress = max(progress, elapsed / cfg.time_budget)
    coeff = 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))  # 1 -> 0 as progress goes 0 -> 1
    return cfg.min_lr + coeff * (cfg.learning_rate - cfg.min_lr)


# ------------------------------------------------------------------------------------------------------------
# The training loop


@dataclass
class RunState:
    """What changes as a run goes on. Checkpoints save it and --resume restores it."""

    step: int = 0  # optimizer steps taken
    best_val_loss: float = math.inf
    evals_without_improvement: int = 0  # for --patience
    # seconds of training so far, over every resume (start-up and compiling not counted)
    elapsed_s: float = 0.0


def train(cfg: TrainConfig, model_cfg: GPTConfig, data: TokenData, precision: Precision,
          resume_from: dict | None = None, ranks: Ranks = Ranks()) -> dict:
    """Train a GPT on the token ids in data, evaluating and checkpointing as configured; returns a summary."""
    device, out_dir = precision.device, Path(cfg.out_dir)
    B, T, A = cfg.batch_size, model_cfg.block_size, cfg.grad_accum_steps

    # The model, its optimizer (two with --optimizer muon) and loss scaler (float16 only), fresh or from
    # last.pt.
    torch.manual_seed(cfg.seed)  # the initial weights: the same on every rank
    model = GPT(model_cfg).to(device)
    betas = (cfg.beta1, cfg.beta2)
    optimizers = configure_optimizer(model, cfg.learning_rate, cfg.weight_decay, betas, device,
                                     kind=cfg.optimizer, muon_lr=cfg.muon_lr)
    scaler = precision.new_scaler()
    state = RunState()
    if resume_from is not None:
        restore_training(resume_from, model, optimizers, scaler)
        state = RunState(**{f.name: resume_from[f.name] for f in fields(RunState)})
    resumed_at = state.step if resume_from is not None else None
    # What runs the forward pass: the model itself, or wrapped by DDP under torchrun, or compiled on a GPU.
    step_model = wrap_for_ranks(model, device, ranks)
    if precision.compile:
        b = B // (ranks.world_size * A)  # one micro-batch
        warm = sample_starts(len(data.train), T, b, torch.Generator().manual_seed(cfg.seed))
        step_model = compile_for_training(step_model, *get_batch(data.train, T, warm, device), precision, A)
    # Random streams, seeded after compiling (whose warm-up draws dropout masks): dropout per rank, and the
    # batch order, one stream that every rank follows, each taking its own slice of every batch.
    torch.manual_seed(cfg.seed + 1 + ranks.rank)
    batch_generator = torch.Generator().manual_seed(cfg.seed)
    if resume_from is not None:
        set_rng_states(resume_from["rng"], device, batch_generator, ranks)

    evals = EvalSets(data, T, cfg.eval_tokens, cfg.seed)
    metrics_path = out_dir / "metrics.csv"
    if ranks.is_main:
        start_metrics(metrics_path, keep_up_to=resumed_at)
    log = TrainLog(out_dir / "train_log.csv", device, ranks, keep_up_to=resumed_at)
    can_plot = print_run(model, optimizers, data, cfg, evals, ranks)

    def checkpoint(full: bool) -> dict:  # full: with what --resume needs (every rank takes part: rng_states)
        if not full:
            return make_checkpoint(model, model_cfg, asdict(cfg), data.tokenizer, asdict(state))
        rng = rng_states(device, batch_generator, ranks)
        return make_checkpoint(model, model_cfg, asdict(cfg), data.tokenizer, asdict(state), optimizers,
                               scaler, rng)

    clock = RunClock(cfg.time_budget, state.elapsed_s, ranks)  # the time budget; Ctrl-C and SIGTERM
    # With a time budget the step count is open-ended, so the bar counts steps and its postfix counts down
    # seconds.
    bar = tqdm(total=None if cfg.time_budget else cfg.max_iters, initial=state.step, desc="train",
               unit="step", dynamic_ncols=True, disable=not ranks.is_main)
    with clock, bar:
        while True:
            elapsed, out_of_time, stop_signal = clock.check()  # the same on every rank
            state.elapsed_s = elapsed

            # Every eval_interval steps (and at the end): evaluate, then save best.pt and last.pt. Not again
            # at the step a resumed run starts from: last.pt is that evaluation.
            if state.step % cfg.eval_interval == 0 or state.step == cfg.max_iters or out_of_time:
                if state.step != resumed_at:
                    loss_value = log.write()  # the steps since the last log point, before last.pt holds them
                    if loss_value is not None and not math.isfinite(loss_value):
                        raise non_finite(state.step)
                    tokens_per_s = log.tokens_per_s(restart=True)  # of the steps since the last evaluation
                    losses = evals.losses(model, precision, ranks)
                    if not all(math.isfinite(v) for v in losses.values()):
                        raise non_finite(state.step)
                    state.elapsed_s = clock.elapsed()
                    improved = losses["val"] < state.best_val_loss
                    state.best_val_loss = min(state.best_val_loss, losses["val"])
                    state.evals_without_improvement = 0 if improved else state.evals_without_improvement + 1
                    lr = get_lr(state.step, cfg, elapsed)  # where the schedule stands now
                    bar.write(f"step {state.step:>5} | train {losses['train']:.4f} | val {losses['val']:.4f} "
                              f"| val {losses['val_bpc']:.3f} bits/char | lr {lr:.2e} "
                              f"| {tokens_per_s:,.0f} tok/s | {state.elapsed_s:,.0f}s"
                              + (" | best" if improved else ""))
                    last = checkpoint(full=True)
                    if ranks.is_main:
                        row = [state.step, losses["train"], losses["val"], losses["val_bpc"], lr,
                               tokens_per_s, state.elapsed_s]
                        best = checkpoint(full=False) if improved else None
                        save_evaluation(out_dir, row, best, last, B * T, can_plot)
                    if cfg.patience and state.evals_without_improvement >= cfg.patience:
                        stop_reason = (f"stopped early: val loss has not improved for {cfg.patience} "
                                       "evaluations (--patience)")
                        break
            if state.step >= cfg.max_iters:
                stop_reason = f"reached max_iters {cfg.max_iters}"
                break
            if out_of_time:
                stop_reason = f"spent the time budget of {cfg.time_budget:g}s"
                break
            if stop_signal:  # after any evaluation due at this step, so that a resumed run never skips one
                raise interrupted(clock, log, checkpoint(full=True), state.step, cfg.out_dir, ranks)

            # One optimizer step. A batch: B random windows of T + 1 tokens; under torchrun each rank takes
            # its share, and --grad_accum_steps A splits that into A micro-batches, whose gradients add up.
            t0 = time.perf_counter()
            lr = get_lr(state.step, cfg, elapsed)
            set_lr(optimizers, lr / cfg.learning_rate)
            starts = sample_starts(len(data.train), T, B, batch_generator)  # (B,): where each window starts
            step_loss = 0.0
            # A parts of this rank's
            for i, part in enumerate(starts.reshape(ranks.world_size, A, -1)[ranks.rank]):
                # (b, T) inputs, and targets: the inputs shifted by one
                x, y = get_batch(data.train, T, part, device)
                # DDP averages gradients after the last one only
                with skip_grad_sync(step_model, last=i == A - 1):
                    with precision.autocast():
                        _, loss = step_model(x, y)  # forward: the mean cross-entropy of predicting y from x
                    # backward: gradients of the mean over all A micro-batches
                    scaler.scale(loss / A).backward()
                step_loss += loss.detach() / A
            if cfg.grad_clip > 0:  # clip the gradient norm: one bad batch cannot throw the weights far
                for optimizer in optimizers:
                    scaler.unscale_(optimizer)  # the true gradients, not the loss-scaled ones (float16)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            for optimizer in optimizers:
                scaler.step(optimizer)  # the update: AdamW (and Muon) move the weights
                optimizer.zero_grad(set_to_none=True)
            scaler.update()
            state.step += 1
            bar.update(1)

            # Log: every log_interval steps, the mean loss since the last log point (reading it waits for the
            # device).
            log_now = state.step % cfg.log_interval == 0 or state.step == cfg.max_iters
            loss_value = log.add(state.step, lr, step_loss, B * T, t0, write=log_now)
            if log_now:
                if not math.isfinite(loss_value):
                    raise non_finite(state.step)
                postfix = dict(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", tok_s=f"{log.tokens_per_s():,.0f}")
                if cfg.time_budget:
                    postfix["left"] = f"{max(0.0, cfg.time_budget - elapsed):.0f}s"
                bar.set_postfix(postfix)

    return {"model": model, "best_val_loss": state.best_val_loss, "step": state.step,
            "stop_reason": stop_reason, "elapsed_s": clock.elapsed()}


def set_lr(optimizers: list, fraction: float) -> None:
    """Set every param group's learning rate to `fraction` of its own peak: the schedule, for AdamW's groups
    and Muon's alike (their peaks may differ: --muon_lr)."""
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["lr"] = group["peak_lr"] * fraction


def save_evaluation(out_dir: Path, row: list, best: dict | None, last: dict, tokens_per_step: int,
                    can_plot: bool) -> None:
    """Write one evaluation's results: its metrics.csv row, best.pt if val improved, last.pt, and loss.png."""
    append_metrics(out_dir / "metrics.csv", row)
    if best is not None:
        save_checkpoint(out_dir / "best.pt", best)
    save_checkpoint(out_dir / "last.pt", last)
    if can_plot:
        plot_metrics(out_dir / "metrics.csv", out_dir / "loss.png", tokens_per_step)


def non_finite(step: int) -> CLIError:
    """The error for a loss that became NaN or infinite; checkpoints from earlier evals stay as they were."""
    return CLIError(f"the loss became non-finite at step {step}; try a lower --learning_rate or --dtype "
                    "float32. Checkpoints from earlier evaluations are intact", EXIT_FAILED)


def interrupted(clock: RunClock, log: TrainLog, last: dict, step: int, out_dir: str, ranks: Ranks
                ) -> CLIError:
    """Ctrl-C or SIGTERM: save last.pt (the train log first, so it holds every step last.pt has taken) and
    return the error that says how to go on, with the shell's exit code for the signal (130, 143)."""
    log.write()
    if ranks.is_main:
        save_checkpoint(Path(out_dir) / "last.pt", last)
    return CLIError(f"interrupted ({clock.signal_name()}) at step {step}; saved {Path(out_dir) / 'last.pt'}. "
                    f"Continue with: {resume_command(out_dir, ranks)}", clock.exit_code())


def print_run(model: GPT, optimizers: list, data: TokenData, cfg: TrainConfig, evals: EvalSets,
              ranks: Ranks) -> bool:
    """Print what is about to train (model, optimizers, data, batch); return whether loss.png can be drawn."""
    c, T, A = model.config, model.config.block_size, cfg.grad_accum_steps
    print(f"model: {model.num_params():,} parameters | {c.n_layer} layers, {c.n_head} heads, {c.n_embd} "
          f"wide, context {T}, dropout {c.dropout} | recipe {cfg.recipe}: {c.pieces()}")
    from extras.precision import pick_muon_dtype  # Muon's orthogonalisation: its dtype, and why that one
    muon_why = pick_muon_dtype(next(model.parameters()).device)[1]
    described = []
    for o in optimizers:
        n = sum(p.numel() for g in o.param_groups for p in g["params"])
        dtype = str(getattr(o, "ns_dtype", "")).removeprefix("torch.")
        described.append(f"{type(o).__name__} ({n:,} parameters, peak lr {o.param_groups[0]['peak_lr']:g}"
                         + (f"; Newton-Schulz in {dtype}: {muon_why})" if dtype else ")"))
    print("optimizer: " + " + ".join(described))
    n_tokens = len(data.train) + len(data.val)
    print(f"data: {len(data.train):,} train / {len(data.val):,} val tokens ({data.tokenizer.kind}, vocab "
          f"{data.tokenizer.vocab_size:,}, {data.n_chars / n_tokens:.2f} characters per token)"
          + (f" | evaluating on the first {evals.n_val_targets:,} val tokens (--eval_tokens)"
             if len(data.val) > cfg.eval_tokens + 1 else ""))
    B_micro = cfg.batch_size // (ranks.world_size * A)
    split = f" ({ranks.world_size} ranks x {A} micro-steps x {B_micro} sequences)"
    split = split if B_micro != cfg.batch_size else ""
    print(f"batch: {cfg.batch_size} sequences x {T} tokens = {cfg.batch_size * T:,} tokens per step{split}")
    embedding_share = c.vocab_size * c.n_embd / model.num_params()
    if data.tokenizer.kind == "char" and embedding_share > 0.5:
        print(f"warning: the token embedding holds {embedding_share:.0%} of the parameters: with "
              f"{c.vocab_size:,} characters most are rare and their vectors barely train. Consider "
              "--tokenizer bpe (any script from 256 bytes), or a wider model")
    can_plot = importlib.util.find_spec("matplotlib") is not None
    if not can_plot:
        print("matplotlib is not installed, so no loss.png (pip install matplotlib); metrics.csv and "
              "train_log.csv have the numbers")
    return can_plot


# ------------------------------------------------------------------------------------------------------------
# The command line: flags are generated from the fields of TrainConfig, RunControls and GPTConfig, help text
# and all.

MODEL_FLAGS = [f for f in fields(GPTConfig) if f.name != "vocab_size"]  # the vocabulary comes from the data


def main(argv=None) -> int:
    """Command-line entry point: parse flags, join the other ranks if under torchrun, run, report errors."""
    ranks = Ranks()
    try:
        given = parse_flags(argv)
        ranks = start_ranks(given.get("device", RunControls.device))
        # One voice: under torchrun only rank 0 prints. The others' output goes nowhere; their errors still
        # show.
        with open(os.devnull, "w") as devnull:
            with redirect_stdout(devnull) if not ranks.is_main else nullcontext():
                run(given, ranks)
        return 0
    except CLIError as e:
        # Rank 0 reports what all ranks hit alike (bad flags, bad data); other ranks add only their own
        # failures.
        if ranks.is_main or (e.code == EXIT_FAILED and str(e)):
            print(f"error: {e}" if ranks.is_main else f"error on rank {ranks.rank}: {e}", file=sys.stderr)
        return e.code
    # Under torchrun, when rank 0 stops on an error of its own (a full disk: only rank 0 writes), the others
    # find the connection closed at their next collective (gloo's words); rank 0's line has said why.
    except RuntimeError as e:
        if ranks.is_main or "closed by peer" not in str(e):
            raise
        print(f"error on rank {ranks.rank}: stopped, as rank 0 did (its error says why)", file=sys.stderr)
        return EXIT_FAILED
    # Ctrl-C outside the training loop (start-up, the closing sample): nothing to save
    except KeyboardInterrupt:
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
        raise CLIError("torchrun needs CUDA GPUs or CPUs: torch.distributed cannot use Apple MPS; add "
                       "--device cpu")
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
        raise CLIError(f"{out_dir} already holds a run; continue it with --resume, start over with "
                       "--overwrite, or pick another --out_dir")

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
        raise CLIError(f"data file {cfg.data} gives {len(data.train):,} train and {len(data.val):,} val "
                       f"tokens; with block_size {T} each split needs at least {T + 1} (one window). Use "
                       "more text or a smaller --block_size")

    if resume_from:
        print(f"resuming {out_dir / 'last.pt'} at step {resume_from['step']} of {cfg.max_iters}")
    try:
        result = train(cfg, model_cfg, data, precision, resume_from, ranks)
    except (RuntimeError, MemoryError) as e:  # torch.cuda.OutOfMemoryError is a RuntimeError; so is MPS's
        if not (isinstance(e, (torch.cuda.OutOfMemoryError, MemoryError))
                or "out of memory" in str(e).lower()):
            raise
        raise CLIError(f"ran out of memory on {device}: lower --batch_size (now {cfg.batch_size}) or "
                       f"--block_size (now {model_cfg.block_size}), raise --grad_accum_steps (now "
                       f"{cfg.grad_accum_steps}; same batch, less memory), or pick a smaller --preset. "
                       "Checkpoints from earlier evaluations are intact", EXIT_FAILED) from None
    # A write into out_dir failed (a full disk, a quota, a drive gone). Checkpoints and loss.png are replaced
    # whole or not at all (write_atomically) and a failed CSV append is cut back, so what was saved is still
    # there to resume from.
    except OSError as e:
        then = (f"continue with: {resume_command(out_dir, ranks)}" if (out_dir / "last.pt").exists()
                else "run the same command again")
        raise CLIError(f"could not write {e.filename or out_dir} ({e.strerror or e}): free some space there "
                       f"(or copy {out_dir} to a disk with room and pass that --out_dir), then {then}. The "
                       "checkpoints saved before are intact", EXIT_FAILED) from None

    print(f"done: {result['step']} steps in {result['elapsed_s']:,.0f}s, {result['stop_reason']} | best val "
          f"loss {result['best_val_loss']:.4f} (checkpoint {out_dir / 'best.pt'}; plot "
          f"{out_dir / 'loss.png'})")
    if cfg.sample_chars and ranks.is_main:
        model, tokenizer = result["model"].eval(), data.tokenizer
        # begin as after a line
        start_ids = tokenizer.encode("\n").tolist() if not tokenizer.unknown("\n") else [0]
        start = torch.tensor([start_ids], dtype=torch.long, device=device)
        generator = torch.Generator().manual_seed(cfg.seed)
        out = model.generate(start, cfg.sample_chars, temperature=0.8, top_k=40, generator=generator)
        print("sample from the final model:\n" + tokenizer.decode(out[0, len(start_ids):].tolist()))
    # The ranks leave together: a rank that tore the process group down while rank 0 was still sampling has
    # been seen to abort (gloo, 2 CPU ranks).
    wait_for_all(ranks)


def parse_flags(argv) -> dict:
    """Parse argv into a dict holding only the flags the user actually gave."""
    parser = FlagParser(description="Train a character-level GPT.")
    add_dataclass_flags(parser.add_argument_group("training"), fields(TrainConfig),
                        lambda f: f"default: {f.metadata.get('default_help', f.default)}")
    add_dataclass_flags(parser.add_argument_group("running (not saved with the run)"), fields(RunControls),
                        lambda f: f"default: {f.default}")
    add_dataclass_flags(parser.add_argument_group("model (override the preset)"), MODEL_FLAGS,
                        lambda f: "default: from the preset")
    return vars(parser.parse_args(argv))


def resolve_configs(given: dict, device: torch.device, resume_from: dict | None):
    """Turn the given flags into (TrainConfig, GPTConfig): preset, then CPU defaults, then explicit flags.

    The GPTConfig's vocab_size is the preset's until the tokenizer is known (run() sets it); on --resume it is
    the checkpoint's, as is the rest of the model's shape.
    """
    train_names = {f.name for f in fields(TrainConfig)}
    model_given = {k: v for k, v in given.items() if k not in train_names}
    if resume_from is not None:
        # The model's shape is fixed by the checkpoint; training settings may be changed (e.g. a longer
        # --max_iters).
        model_cfg = GPTConfig(**resume_from["model_config"])
        saved_cfg = TrainConfig(**{k: v for k, v in resume_from["train_config"].items() if k in train_names})
        clashes = [f"--{k} {v} (checkpoint has {getattr(model_cfg, k)})" for k, v in model_given.items()
                   if getattr(model_cfg, k) != v]
        clashes += [f"--{k} {given[k]} (checkpoint has {getattr(saved_cfg, k)})"
                    for k in ("tokenizer", "vocab_size", "recipe", "optimizer")
                    if k in given and given[k] != getattr(saved_cfg, k)]
        if clashes:
            raise CLIError("--resume cannot change the model's shape, tokenizer or optimizer: "
                           + ", ".join(clashes))
        return replace(saved_cfg, **{k: v for k, v in given.items() if k in train_names}), model_cfg
    if "vocab_size" in given and given.get("tokenizer", TrainConfig.tokenizer) != "bpe":
        raise CLIError("--vocab_size sets the size of a BPE vocabulary: add --tokenizer bpe "
                       "(a char vocabulary is simply every character in the text)")
    settings = dict(given)
    if device.type == "cpu" and "preset" not in given:
        recipe = given.get("recipe", CPU_DEFAULTS["recipe"])
        defaults = {**CPU_DEFAULTS, "recipe": recipe, **(CPU_DEFAULTS_MODERN if recipe == "modern" else {})}
        settings = {**defaults, **given}
        chosen = ", ".join(f"{k}={v}" for k, v in defaults.items())
        print(f"CPU and no --preset: using a quick run ({chosen}); pass --preset or any of these flags to "
              "choose yourself")
    preset = settings.pop("preset", None) or "medium"
    if settings.get("recipe", TrainConfig.recipe) != "gpt2":  # GPT-2 is every field's default already
        from extras.modern import RECIPES
        settings = {**RECIPES[settings["recipe"]], **settings}  # flags given win over the recipe
    cfg = TrainConfig(**{k: v for k, v in settings.items() if k in train_names}, preset=preset)
    model_cfg = replace(PRESETS[preset], **{k: v for k, v in settings.items() if k not in train_names})
    return cfg, model_cfg


def validate(cfg: TrainConfig, model_cfg: GPTConfig, world_size: int = 1) -> None:
    """Reject settings that cannot train, naming the flag."""
    must_be_positive = [(cfg, "batch_size"), (cfg, "max_iters"), (cfg, "learning_rate"),
                        (cfg, "eval_interval"), (cfg, "log_interval"), (cfg, "eval_tokens"),
                        (cfg, "grad_accum_steps"), (model_cfg, "block_size"), (model_cfg, "n_layer"),
                        (model_cfg, "n_head"), (model_cfg, "n_embd")]
    positive = {name: getattr(config, name) for config, name in must_be_positive}
    for name, value in positive.items():
        if not value > 0:
            raise CLIError(f"--{name} must be positive, got {value}")
    for name in ("min_lr", "warmup_iters", "weight_decay", "grad_clip", "sample_chars", "patience",
                 "time_budget"):
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


def load_data(cfg: TrainConfig, resume_from: dict | None, data_given: bool) -> TokenData:
    """Download Tiny Shakespeare if it is the corpus and missing, then encode the text (or reuse its
    cache)."""
    data_path = Path(cfg.data)
    if not data_given and not data_path.exists():
        print(f"downloading Tiny Shakespeare to {data_path} ...")
        try:
            download(DATA_URL, data_path, DATA_SHA256)
        except DataError as e:
            raise CLIError(str(e), EXIT_FAILED) from None
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else Path(cfg.out_dir) / "cache"
    tokenizer = None
    try:
        tokenizer = tokenizer_from_checkpoint(resume_from) if resume_from else None
        return prepare(data_path, cache_dir, tokenizer=tokenizer, kind=cfg.tokenizer,
                       vocab_size=cfg.vocab_size)
    except DataError as e:
        resumed_char = tokenizer is not None and "not in the vocabulary" in str(e)
        hint = "; --resume needs text in the checkpoint's vocabulary" if resumed_char else ""
        raise CLIError(f"{e}{hint}") from None
    # a tokenizer that cannot be built: no `tokenizers` package, a damaged checkpoint entry
    except ValueError as e:
        raise CLIError(str(e)) from None


if __name__ == "__main__":
    sys.exit(main())
