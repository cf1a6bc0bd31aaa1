"""Setting up a training run from the command line, and ending it in one line when something goes wrong.

train.py's main() hands its arguments to run_command(), which does everything around the loop:

    flags -> settings     TrainConfig, RunControls and GPTConfig fields as flags (their --help: the comment
                          beside each field); the CPU quick run's defaults, --recipe, then the flags given;
                          checked before anything runs
    device, precision     extras/precision.py decides, and the start-up line says why (on a CPU, also why
                          not a GPU the machine has: extras/unused_gpu.py)
    --resume              last.pt loaded and checked against the flags given and its text (extras/resume.py)
    torchrun              ranks joined (extras/distributed.py, only under torchrun); rank 0 alone prints
    data                  downloaded if it is the default corpus and missing, encoded or read from its cache
    the start-up report   model, optimizer, data and batch, printed as the run starts (report_start)
    errors                a mistake the user can fix, a full disk or a locked file, out of memory, Ctrl-C:
                          one line on stderr and an exit code (docs/exit-codes.md; extras/failures.py),
                          never a traceback
"""

import argparse
import importlib.util
import math
import os
import re
import shutil
import sys
import types
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch

from extras.cli import EXIT_FAILED, CLIError, FlagParser, run_cli
from extras.files import check_writable
from extras.precision import Precision, make_precision
from extras.ranks import Ranks
from extras.text import DEFAULT_DATA, IN_MEMORY_BYTES, DataError, TokenData, read_text
from model import PRESETS, GPTConfig


@dataclass
class RunControls:
    """How this process runs, not what it trains: flags like the others, but never saved as the run's
    settings, so a run saved on one device resumes on another with other controls."""

    resume: bool = False  # continue the run in out_dir from last.pt
    overwrite: bool = False  # start a new run even if out_dir already holds one
    device: str = "auto"  # auto picks cuda, then mps, then cpu
    dtype: str = "auto"  # auto: bfloat16 on GPUs that have it, float16 on older GPUs, float32 elsewhere
    compile: str = "auto"  # torch.compile the training step; auto: on CUDA with Triton only


# The flags that take one of a few words, and those words. Every flag's --help text is the comment beside its
# field (extras/flag_help.py reads it there).
CHOICES = {"tokenizer": ["char", "bpe"], "preset": list(PRESETS), "recipe": ["gpt2", "modern"],
           "optimizer": ["adamw", "muon"], "device": ["auto", "cpu", "cuda", "mps"],
           "dtype": ["auto", "float32", "bfloat16", "float16"], "compile": ["auto", "on", "off"],
           "position": ["learned", "rope"], "norm": ["layernorm", "rmsnorm"],
           "mlp": ["gelu", "swiglu", "relu2"]}
MODEL_FLAGS = [f for f in fields(GPTConfig) if f.name != "vocab_size"]  # the vocabulary comes from the data

# What `python train.py` runs on a CPU when no --preset is given: the medium preset would take about a day
# there. Five minutes of the tiny preset instead, GPT-2 at the settings that did best in its 100-s runs
# (docs/tune_cpu.sh: batch 32 x 64, lr 4e-3) and over 300 s (docs/ablate.sh cpu_default; docs/BENCHMARKS.md).
# Flags override.
CPU_DEFAULTS = {"preset": "tiny", "recipe": "gpt2", "batch_size": 32, "block_size": 64, "learning_rate": 4e-3,
                "warmup_iters": 50, "time_budget": 300.0, "max_iters": 100_000, "eval_interval": 1000}
# With --recipe modern, the modern recipe's own best in the same five minutes: RoPE lets the context grow to
# 256 (batch 8 x 256), where GPT-2's position table trains worse, and Muon's lr 2e-3 won its 300-s runs.
CPU_DEFAULTS_MODERN = {"batch_size": 8, "block_size": 256, "muon_lr": 2e-3}


@dataclass
class Run:
    """A training run, set up: its settings, the data, where it runs, and last.pt's contents when resuming."""

    cfg: object  # train.TrainConfig
    model_cfg: GPTConfig
    data: TokenData
    precision: Precision
    resume_from: dict | None
    ranks: Ranks


def run_command(argv, config_class, body) -> int:
    """Parse argv into a Run of config_class's settings and call body(run); under torchrun, on every rank.
    Returns the exit code: a mistake or a failure is one line on stderr and its code (extras/cli.py)."""

    def command() -> int:
        given = parse_flags(argv, config_class)
        if "RANK" in os.environ:  # started by torchrun: join the other ranks; rank 0 alone prints
            from extras.distributed import run_on_ranks
            return run_on_ranks(given.get("device", RunControls.device),
                                lambda ranks: set_up_and_run(given, ranks))
        return set_up_and_run(given, Ranks())

    def set_up_and_run(given: dict, ranks: Ranks) -> int:
        run = set_up(given, ranks, config_class)
        try:
            body(run)
        except (RuntimeError, MemoryError, OSError) as e:
            from extras.failures import explain  # (only when a run fails)
            explain(e, run)  # out of memory or a failed write: the one line that says what to do
            raise  # anything else: the traceback
        return 0

    return run_cli(command)


def parse_flags(argv, config_class) -> dict:
    """Parse argv into a dict holding only the flags the user actually gave: one flag per field of
    config_class (train.py's TrainConfig), RunControls and GPTConfig (but vocab_size, which the data sets)."""
    parser = FlagParser(description="Train a character-level GPT.")
    for title, cls, flag_fields in [("training", config_class, fields(config_class)),
                                    ("running (not saved with the run)", RunControls, fields(RunControls)),
                                    ("model (override the preset)", GPTConfig, MODEL_FLAGS)]:
        add_dataclass_flags(parser.add_argument_group(title), cls, flag_fields)
    return vars(parser.parse_args(argv))


def _flag_type(annotation):
    """The type a flag parses to: int for `int | None`, and so on."""
    if isinstance(annotation, types.UnionType):
        return next(a for a in annotation.__args__ if a is not type(None))
    return annotation


def add_dataclass_flags(group, cls, flag_fields) -> None:
    """Add one --name flag per field of the dataclass cls in flag_fields, with its choices from CHOICES if it
    has some. Unset flags stay out of the namespace, so we know what was given."""
    for f in flag_fields:
        kind = _flag_type(f.type)
        kwargs = dict(default=argparse.SUPPRESS)
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif f.name in CHOICES:
            kwargs.update(type=kind, choices=CHOICES[f.name])
        else:
            kwargs.update(type=kind, metavar=kind.__name__.upper())
        group.add_argument(f"--{f.name}", **kwargs).field_of = cls  # its --help: the comment by the field


def set_up(given: dict, ranks: Ranks, config_class) -> Run:
    """Pick the device and precision, check the flags and any checkpoint to resume, and load the data."""
    control_names = {f.name for f in fields(RunControls)}
    controls = RunControls(**{k: v for k, v in given.items() if k in control_names})
    given = {k: v for k, v in given.items() if k not in control_names}  # what is left are the run's settings
    precision = make_precision(controls.device, controls.dtype, controls.compile,
                               local_rank=ranks.local_rank if ranks.launched else None)
    device = precision.device
    print(precision.describe()
          + (f" | {ranks.world_size} ranks ({torch.distributed.get_backend()})" if ranks.launched else ""))
    may_have_gpu = shutil.which("nvidia-smi") or sys.platform == "darwin"
    if device.type == "cpu" and controls.device == "auto" and may_have_gpu:
        from extras.unused_gpu import unused_gpu  # one this torch cannot use? Say why, and the fix
        why = unused_gpu()
        if why:
            print(f"note: {why}")

    out_dir = Path(given.get("out_dir", config_class.out_dir))
    resume_from = None
    if controls.resume:
        from extras.resume import resume_run  # only for --resume
        resume_from, cfg, model_cfg = resume_run(out_dir / "last.pt", given, config_class, DEFAULT_DATA)
    else:
        if (out_dir / "last.pt").exists() and not controls.overwrite:
            raise CLIError(f"{out_dir} already holds a run; continue it with --resume, start over with "
                           "--overwrite, or pick another --out_dir")
        cfg, model_cfg = resolve_configs(given, device, config_class)
    validate(cfg, model_cfg, ranks.world_size)

    # The data: downloaded if need be, encoded or read back from its cache (under torchrun, rank 0 first).
    data = ranks.main_first(lambda: check_writable(out_dir) or load_data(cfg, resume_from),
                            lambda: load_data(cfg, resume_from))
    if resume_from is None:
        model_cfg = replace(model_cfg, vocab_size=data.tokenizer.vocab_size)
    T = model_cfg.block_size
    if len(data.val) < T + 1 or len(data.train) < T + 1:
        raise CLIError(f"data file {cfg.data or DEFAULT_DATA} gives {len(data.train):,} train and "
                       f"{len(data.val):,} val tokens; with block_size {T} each split needs at least {T + 1} "
                       "(one window). Use more text or a smaller --block_size")
    return Run(cfg, model_cfg, data, precision, resume_from, ranks)


def resolve_configs(given: dict, device: torch.device, config_class):
    """Turn the given flags into (TrainConfig, GPTConfig) for a new run: the preset, then the CPU quick run's
    defaults, then the recipe, then the flags given. The GPTConfig's vocab_size is the preset's until the
    tokenizer is known (set_up sets it)."""
    train_names = {f.name for f in fields(config_class)}
    if "vocab_size" in given and given.get("tokenizer", config_class.tokenizer) != "bpe":
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
    if settings.get("recipe", config_class.recipe) != "gpt2":  # GPT-2 is every field's default already
        from extras.modern import RECIPES
        settings = {**RECIPES[settings["recipe"]], **settings}  # flags given win over the recipe
    cfg = config_class(**{k: v for k, v in settings.items() if k in train_names}, preset=preset)
    model_cfg = replace(PRESETS[preset], **{k: v for k, v in settings.items() if k not in train_names})
    return cfg, model_cfg


def validate(cfg, model_cfg: GPTConfig, world_size: int = 1) -> None:
    """Reject settings that cannot train, naming the flag."""
    must_be_positive = [(cfg, "batch_size"), (cfg, "max_iters"), (cfg, "learning_rate"),
                        (cfg, "eval_interval"), (cfg, "log_interval"), (cfg, "eval_tokens"),
                        (cfg, "grad_accum_steps"), (model_cfg, "block_size"), (model_cfg, "n_layer"),
                        (model_cfg, "n_head"), (model_cfg, "n_embd")]
    for config, name in must_be_positive:
        if not getattr(config, name) > 0:
            raise CLIError(f"--{name} must be positive, got {getattr(config, name)}")
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
        from extras.bpe import check_bpe_vocab_size  # (only for --tokenizer bpe)
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


def load_data(cfg, resume_from: dict | None) -> TokenData:
    """The run's text as token ids: Tiny Shakespeare downloaded first if it is the corpus and missing, then
    encoded (or read back from the token cache)."""
    data_path = Path(cfg.data) if cfg.data else DEFAULT_DATA
    if data_path.resolve() == DEFAULT_DATA.resolve() and not data_path.exists():
        from extras.download import download_corpus  # only the first time
        download_corpus(data_path)
    tokenizer = None
    try:
        if resume_from is not None:
            from extras.checkpoint import tokenizer_from_checkpoint  # (only --resume needs it)
            tokenizer = tokenizer_from_checkpoint(resume_from)
        # A char text of a few MB is read whole; larger texts and BPE go through the token cache, encoded once
        # in a stream and read back as a memory map.
        if cfg.tokenizer == "char" and data_path.is_file() and data_path.stat().st_size <= IN_MEMORY_BYTES:
            return read_text(data_path, tokenizer)
        from extras.dataset import prepare

        cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else Path(cfg.out_dir) / "cache"
        return prepare(data_path, cache_dir, tokenizer=tokenizer, kind=cfg.tokenizer,
                       vocab_size=cfg.vocab_size)
    except DataError as e:
        resumed_char = tokenizer is not None and "not in the vocabulary" in str(e)
        hint = "; --resume needs text in the checkpoint's vocabulary" if resumed_char else ""
        raise CLIError(f"{e}{hint}") from None
    # a tokenizer that cannot be built: no `tokenizers` package, a damaged checkpoint entry
    except ValueError as e:
        raise CLIError(str(e)) from None


def report_start(model, optimizers: list, data: TokenData, cfg, evals, ranks: Ranks) -> None:
    """Print what is about to train: the model, the optimizers, the data and the batch."""
    c, T, A = model.config, model.config.block_size, cfg.grad_accum_steps
    print(f"model: {model.num_params():,} parameters | {c.n_layer} layers, {c.n_head} heads, {c.n_embd} "
          f"wide, context {T}, dropout {c.dropout} | recipe {cfg.recipe}: {c.pieces()}")
    described = []
    for o in optimizers:
        n = sum(p.numel() for g in o.param_groups for p in g["params"])
        about = f"{type(o).__name__} ({n:,} parameters, peak lr {o.param_groups[0]['peak_lr']:g}"
        if hasattr(o, "describe"):  # Muon: the dtype of its orthogonalisation, and why that one
            about += f"; {o.describe()}"
        described.append(about + ")")
    print("optimizer: " + " + ".join(described))
    n_tokens = len(data.train) + len(data.val)
    print(f"data: {len(data.train):,} train / {len(data.val):,} val tokens ({data.tokenizer.kind}, vocab "
          f"{data.tokenizer.vocab_size:,}, {data.n_chars / n_tokens:.2f} characters per token)"
          + (f" | evaluating on the first {evals.n_val_targets:,} val tokens (--eval_tokens)"
             if len(data.val) > cfg.eval_tokens + 1 else ""))
    B_micro = cfg.batch_size // (ranks.world_size * A)
    split = (f" ({ranks.world_size} ranks x {A} micro-steps x {B_micro} sequences)"
             if B_micro != cfg.batch_size else "")
    print(f"batch: {cfg.batch_size} sequences x {T} tokens = {cfg.batch_size * T:,} tokens per step{split}")
    embedding_share = c.vocab_size * c.n_embd / model.num_params()
    if data.tokenizer.kind == "char" and embedding_share > 0.5:
        print(f"warning: the token embedding holds {embedding_share:.0%} of the parameters: with "
              f"{c.vocab_size:,} characters most are rare and their vectors barely train. Consider "
              "--tokenizer bpe (any script from 256 bytes), or a wider model")
    if importlib.util.find_spec("matplotlib") is None:
        print("matplotlib is not installed, so no loss.png (pip install matplotlib); metrics.csv and "
              "train_log.csv have the numbers")


def check_finite(step: int, *losses: float | None) -> None:
    """Stop the run with one line if a loss (None: none to check) became NaN or infinite; checkpoints from
    earlier evaluations stay as they were."""
    if not all(math.isfinite(v) for v in losses if v is not None):
        raise CLIError(f"the loss became non-finite at step {step}; try a lower --learning_rate or --dtype "
                       "float32. Checkpoints from earlier evaluations are intact", EXIT_FAILED)
