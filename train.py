"""Train a GPT-2-style model on Tiny Shakespeare (or any UTF-8 text), one character at a time.

    python train.py                          # GPU / Apple MPS: the medium preset; CPU: a 5-minute tiny run
    python train.py --preset small --max_iters 2000
    python train.py --resume                 # continue out/last.pt where it stopped
    python train.py --recipe modern          # the 2026 pieces: RoPE, ReLU² and Muon (extras/modern.py)
    python train.py --data my.txt --tokenizer bpe --vocab_size 1024
    torchrun --standalone --nproc_per_node=4 train.py    # data parallel over 4 GPUs (extras/distributed.py)

Read top to bottom: the settings (TrainConfig), the learning-rate schedule (get_lr), the loop (train) and
main. The loop is: a batch, forward, backward, clip, step, log; every eval_interval steps, evaluate and save
a checkpoint. Setting a run up from the command line (flags, device, data, resuming, one-line errors) is
extras/run.py's job; each call into extras/ is named for what it does, and its docstring says the rest.
"""

import math
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from tqdm import tqdm

from extras.control import RunClock
from extras.evaluation import EvalSets
from extras.files import save_checkpoint
from extras.metrics import METRICS_COLUMNS, TrainLog, append_metrics, plot_metrics, restart_csv
from extras.precision import Precision
from extras.ranks import Ranks, rng_states
from extras.run import Run, check_finite, report_start, run_command
from extras.step import configure_optimizer, get_batch, sample_starts
from extras.text import TokenData
from extras.tokenizer import tokenizer_to_dict
from model import GPT, GPTConfig


@dataclass
class TrainConfig:
    """The settings of a training run: everything but the model's architecture. Each field is a command-line
    flag of the same name (`python train.py --help`), and the whole config is saved in checkpoints."""

    data: str | None = None  # UTF-8 text to train on; None: Tiny Shakespeare, downloaded on first use
    out_dir: str = "out"  # checkpoints, metrics.csv, train_log.csv and loss.png go here
    cache_dir: str | None = None  # token files of BPE and of texts over 32 MB; None: out_dir/cache
    tokenizer: str = "char"  # char: one token per character; bpe: byte-level BPE (extras/bpe.py)
    vocab_size: int = 1024  # BPE vocabulary size, the 256 bytes included (--tokenizer bpe)
    preset: str | None = None  # the model's size, from model.PRESETS; None: medium, or a quick run on CPU
    batch_size: int = 64  # sequences per optimizer step, over all ranks and micro-steps
    grad_accum_steps: int = 1  # micro-steps each batch is split into, to fit memory: the same result
    max_iters: int = 5000  # optimizer steps in the whole run
    time_budget: float = 0.0  # seconds of training; the run and its schedule end when spent (0: no limit)
    recipe: str = "gpt2"  # gpt2, or modern: the 2026 pieces measured to pay (extras/modern.py)
    optimizer: str = "adamw"  # adamw, or muon for the matrices inside the blocks (AdamW for the rest)
    learning_rate: float = 1e-3  # the peak learning rate, reached at the end of warmup
    muon_lr: float | None = None  # the Muon group's peak (--optimizer muon); None: learning_rate
    min_lr: float = 1e-4  # the learning rate at the end of the cosine decay
    warmup_iters: int = 100  # steps of linear warmup
    weight_decay: float = 0.1  # AdamW's weight decay, on 2-D weights only
    beta1: float = 0.9  # AdamW's momentum
    beta2: float = 0.99  # AdamW's average of squared gradients
    grad_clip: float = 1.0  # clip the gradient norm to this (0: no clipping)
    eval_interval: int = 250  # evaluate and save checkpoints every this many steps
    eval_tokens: int = 500_000  # evaluate on at most this many val tokens, and as many train tokens
    patience: int = 0  # stop after this many evaluations without a new best val loss (0: never)
    log_interval: int = 10  # log the mean training loss every this many steps
    sample_chars: int = 300  # tokens to sample from the final model (0: none)
    seed: int = 1337  # repeats exactly on a CPU with --max_iters; not with --time_budget (the CPU default)


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


def set_lr(optimizers: list, fraction: float) -> None:
    """Set every param group's learning rate to `fraction` of its own peak: the schedule, for AdamW's groups
    and Muon's alike (their peaks may differ: --muon_lr)."""
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["lr"] = group["peak_lr"] * fraction


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
    """Train a GPT on the token ids in data, evaluating and saving checkpoints as configured; returns a
    summary of the run and the trained model."""
    device, out_dir = precision.device, Path(cfg.out_dir)
    B, T, A = cfg.batch_size, model_cfg.block_size, cfg.grad_accum_steps

    # The model (the same initial weights on every rank), its optimizers (two with --optimizer muon) and the
    # loss scaler (float16 only). The forward pass runs through step_model: the model, or a wrapper around it.
    torch.manual_seed(cfg.seed)
    model = GPT(model_cfg).to(device)
    optimizers = configure_optimizer(model, cfg.learning_rate, cfg.weight_decay, (cfg.beta1, cfg.beta2),
                                     device, kind=cfg.optimizer, muon_lr=cfg.muon_lr)
    scaler = precision.new_scaler()
    step_model = ranks.wrap(model)  # under torchrun: DistributedDataParallel, which averages the gradients
    if precision.compile:  # a CUDA GPU with Triton: compiled now, on a micro-batch of the training shape
        from extras.compiling import compile_for_training
        step_model = compile_for_training(step_model, data.train, cfg.seed, B // (ranks.world_size * A),
                                          precision, ranks, A)
    # Random streams: dropout, one per rank; the batch order, one stream that every rank follows, each taking
    # its own slice of every batch.
    torch.manual_seed(cfg.seed + 1 + ranks.rank)
    batch_generator = torch.Generator().manual_seed(cfg.seed)
    state = RunState()
    if resume_from is not None:  # weights, optimizer, loss scaler, random streams and progress from last.pt
        from extras.resume import restore_training  # (only --resume needs it)
        restore_training(resume_from, model, optimizers, scaler, batch_generator, ranks)
        state = RunState(**{f.name: resume_from.get(f.name, f.default) for f in fields(RunState)})

    resumed_at = state.step if resume_from is not None else None  # the CSVs keep their rows up to here
    if ranks.is_main:
        restart_csv(out_dir / "metrics.csv", METRICS_COLUMNS, keep_up_to=resumed_at)
    log = TrainLog(out_dir / "train_log.csv", device, ranks, keep_up_to=resumed_at)
    evals = EvalSets(data, T, cfg.eval_tokens, cfg.seed)  # fixed train and val samples, for every evaluation
    report_start(model, optimizers, data, cfg, evals, ranks)
    training = (model, data, optimizers, scaler, batch_generator)  # what last.pt saves

    clock = RunClock(cfg.time_budget, state.elapsed_s, ranks)  # the time budget; Ctrl-C and SIGTERM
    bar = tqdm(total=None if cfg.time_budget else cfg.max_iters,  # with a time budget, steps are open-ended
               initial=state.step, desc="train", unit="step", dynamic_ncols=True, disable=not ranks.is_main)
    stop_reason = None
    with clock, bar:
        elapsed, out_of_time, stop_signal = clock.check()  # the same on every rank
        if resume_from is None:  # step 0: the untrained model, whose loss should be about ln(vocab_size)
            bar.write(evaluate_and_save(cfg, state, elapsed, *training, evals, log, precision, ranks))
        while state.step < cfg.max_iters and not (out_of_time or stop_signal):
            # A batch: B random windows of T + 1 tokens; under torchrun each rank takes its share, and
            # --grad_accum_steps A splits that into A micro-batches, whose gradients add up.
            t0 = time.perf_counter()
            lr = get_lr(state.step, cfg, elapsed)
            set_lr(optimizers, lr / cfg.learning_rate)
            starts = sample_starts(len(data.train), T, B, batch_generator)  # (B,): where each window starts
            step_loss = 0.0
            for i, part in enumerate(starts.reshape(ranks.world_size, A, -1)[ranks.rank]):  # this rank's A
                x, y = get_batch(data.train, T, part, device)  # (b, T) inputs, and targets: x shifted by one
                with ranks.no_sync(step_model, last=i == A - 1):  # DDP averages gradients after the last
                    with precision.autocast():
                        _, loss = step_model(x, y)  # forward: the mean cross-entropy of predicting y from x
                    scaler.scale(loss / A).backward()  # backward: gradients of the mean over the A parts
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
            # device, so not every step).
            log_now = state.step % cfg.log_interval == 0 or state.step == cfg.max_iters
            loss_value = log.add(state.step, lr, step_loss, B * T, t0, write=log_now)
            if log_now:
                check_finite(state.step, loss_value)  # a NaN stops the run; earlier checkpoints stay
                postfix = dict(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", tok_s=f"{log.tokens_per_s():,.0f}")
                if cfg.time_budget:
                    postfix["left"] = f"{max(0.0, cfg.time_budget - elapsed):.0f}s"
                bar.set_postfix(postfix)

            # Every eval_interval steps, at the last step and when the time is up: evaluate, save checkpoints.
            elapsed, out_of_time, stop_signal = clock.check()
            if state.step % cfg.eval_interval == 0 or state.step == cfg.max_iters or out_of_time:
                bar.write(evaluate_and_save(cfg, state, elapsed, *training, evals, log, precision, ranks))
                if cfg.patience and state.evals_without_improvement >= cfg.patience:
                    stop_reason = (f"stopped early: val loss has not improved for {cfg.patience} evaluations "
                                   "(--patience)")
                    break

    if stop_reason is None and state.step < cfg.max_iters and not out_of_time:  # Ctrl-C or SIGTERM
        from extras.failures import interrupted  # (only a stopped run needs it)
        raise interrupted(clock, log, make_checkpoint(cfg, state, *training, ranks), ranks)
    stop_reason = stop_reason or (f"reached max_iters {cfg.max_iters}" if state.step >= cfg.max_iters
                                  else f"spent the time budget of {cfg.time_budget:g}s")
    return {"model": model, "best_val_loss": state.best_val_loss, "step": state.step,
            "stop_reason": stop_reason, "elapsed_s": clock.elapsed()}


def evaluate_and_save(cfg: TrainConfig, state: RunState, elapsed: float, model: GPT, data: TokenData,
                      optimizers: list, scaler, batch_generator: torch.Generator, evals: EvalSets,
                      log: TrainLog, precision: Precision, ranks: Ranks) -> str:
    """Evaluate on the fixed train and val samples and update the best val loss; then write metrics.csv,
    best.pt (when val improved), last.pt and loss.png. Every rank takes part; rank 0 writes. Returns the
    evaluation's line for the log."""
    check_finite(state.step, log.write())  # the steps since the last log point, before last.pt holds them
    tokens_per_s = log.tokens_per_s(restart=True)  # of the steps since the last evaluation
    losses = evals.losses(model, precision, ranks)
    check_finite(state.step, *losses.values())
    state.elapsed_s = elapsed
    improved = losses["val"] < state.best_val_loss
    state.best_val_loss = min(state.best_val_loss, losses["val"])
    state.evals_without_improvement = 0 if improved else state.evals_without_improvement + 1
    lr = get_lr(state.step, cfg, elapsed)  # where the schedule stands now
    last = make_checkpoint(cfg, state, model, data, optimizers, scaler, batch_generator, ranks)
    if ranks.is_main:
        out_dir = Path(cfg.out_dir)
        row = [state.step, losses["train"], losses["val"], losses["val_bpc"], lr, tokens_per_s,
               state.elapsed_s]
        append_metrics(out_dir / "metrics.csv", row)
        if improved:  # best.pt: the weights, settings and state; what generate.py and evaluate.py need
            save_checkpoint(out_dir / "best.pt", make_checkpoint(cfg, state, model, data))
        save_checkpoint(out_dir / "last.pt", last)
        plot_metrics(out_dir / "metrics.csv", out_dir / "loss.png", cfg.batch_size * model.config.block_size)
    return (f"step {state.step:>5} | train {losses['train']:.4f} | val {losses['val']:.4f} | val "
            f"{losses['val_bpc']:.3f} bits/char | lr {lr:.2e} | {tokens_per_s:,.0f} tok/s | "
            f"{state.elapsed_s:,.0f}s" + (" | best" if improved else ""))


def make_checkpoint(cfg: TrainConfig, state: RunState, model: GPT, data: TokenData,
                    optimizers: list | None = None, scaler=None,
                    batch_generator: torch.Generator | None = None, ranks: Ranks = Ranks()) -> dict:
    """A checkpoint, as one dict of tensors and plain data (torch.load(weights_only=True) reads it safely):
    the weights, the model's architecture, the settings, the tokenizer, the text's sha256 and the state;
    best.pt holds just these. With the optimizers, also what --resume needs (last.pt): their states, the loss
    scaler's and every random state (every rank takes part then)."""
    ckpt = {"model": model.state_dict(), "model_config": asdict(model.config), "train_config": asdict(cfg),
            "tokenizer": tokenizer_to_dict(data.tokenizer), "data_sha256": data.sha256, **asdict(state)}
    if optimizers is not None:
        ckpt.update(optimizer=optimizers[0].state_dict(), scaler=scaler.state_dict(),
                    rng=rng_states(next(model.parameters()).device, batch_generator, ranks))
        if len(optimizers) > 1:  # --optimizer muon
            ckpt["muon"] = optimizers[1].state_dict()
    return ckpt


# ------------------------------------------------------------------------------------------------------------
# The command line


def main(argv=None) -> int:
    """`python train.py [flags]`: set the run up (extras/run.py), train, and sample from the trained model.
    Returns the exit code: 0, or the code of the one-line error printed."""
    return run_command(argv, TrainConfig, train_and_sample)


def train_and_sample(run: Run) -> None:
    """Train with the run's settings, say how it ended, and sample a few lines from the final model."""
    cfg = run.cfg
    result = train(cfg, run.model_cfg, run.data, run.precision, run.resume_from, run.ranks)
    out_dir = Path(cfg.out_dir)
    print(f"done: {result['step']} steps in {result['elapsed_s']:,.0f}s, {result['stop_reason']} | best val "
          f"loss {result['best_val_loss']:.4f} (checkpoint {out_dir / 'best.pt'}; "
          f"plot {out_dir / 'loss.png'})")
    if cfg.sample_chars and run.ranks.is_main:
        model, tokenizer = result["model"].eval(), run.data.tokenizer
        start_ids = tokenizer.encode("\n").tolist() if not tokenizer.unknown("\n") else [0]  # as after a line
        start = torch.tensor([start_ids], dtype=torch.long, device=run.precision.device)
        generator = torch.Generator().manual_seed(cfg.seed)
        out = model.generate(start, cfg.sample_chars, temperature=0.8, top_k=40, generator=generator)
        print("sample from the final model:\n" + tokenizer.decode(out[0, len(start_ids):].tolist()))


if __name__ == "__main__":
    sys.exit(main())
