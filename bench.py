"""Measure speed on this machine and print markdown tables: training and generation, per preset.

    python bench.py                                   # every preset on the auto-picked device
    python bench.py --presets medium --compile on     # one preset, compiled
    python bench.py --presets tiny --recipes gpt2,modern
                                                      # the GPT-2 and the modern recipe's step, side by side
    python bench.py --quick                           # tiny settings, a few seconds (CI runs this)
    python bench.py --metrics out/metrics.csv --target_loss 1.47   # when did a run first reach a val loss?
    python bench.py --data_mb 300                     # encoding a 300 MB text: first time, cached,
                                                      # peak memory
    python bench.py --optimizer_step                  # the AdamW step alone: multi-tensor against fused
    python bench.py --matmul                          # is bfloat16 native here? a matmul in each dtype
    python bench.py --gpu_check                       # on a GPU: tests, speed, medium with each recipe

Training: train.py itself, run in a subprocess with the preset, recipe, batch and precision asked for (dtype,
loss scaler, compile) on a random 65-character text, so the step timed is the one training takes; the figure
is the tokens/s its metrics.csv reports for the steps after the warm-up steps. Generation: new tokens per
second from a one-token prompt, recomputing the whole window at every step (as nanoGPT's sample.py) against
the KV cache with each window policy, in float32 and with the weights in the dtype generate.py picks.
Encoding: dataset.prepare() on a generated text of --data_mb megabytes, each run in a fresh process so that
its peak memory (the operating system's high-water mark for that process) is its own.
"""

import json
import platform
import random
import re
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from extras.cli import EXIT_FAILED, CLIError, FlagParser, run_cli
from extras.commands import shell_command
from extras.dataset import DEFAULT_DATA
from extras.metrics import read_metrics
from model import GPT, PRESETS, GPTConfig
from extras.cpu import cpu_class, cpu_has_native_bfloat16
from extras.precision import Precision, make_precision
from extras.engine import generate
from extras.modern import RECIPES, pick_muon_dtype
from extras.step import configure_optimizer

def synchronize(device: torch.device) -> None:
    """Wait for queued device work so a timer reads real elapsed time."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def time_training(preset: str, batch_size: int, block_size: int, steps: int, warmup: int,
                  precision: Precision, recipe: str = "gpt2",
                  work_dir: Path = Path("out/bench-train")) -> dict:
    """Seconds per optimizer step of preset with train.py's --recipe, at batch_size x block_size: train.py
    itself, run for warmup + steps steps on a random 65-character text in precision's device, dtype and
    compile setting, timed over the last `steps` (the tokens/s its metrics.csv reports for the steps after the
    evaluation at step `warmup`)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    text = work_dir / "random.txt"
    if not text.exists():  # every one of 65 characters many times over: a vocabulary of 65, as Shakespeare's
        chars = [chr(c) for c in range(33, 98)]
        text.write_text("".join(random.Random(0).choices(chars, k=200_000)), encoding="utf-8")
    run_dir = work_dir / f"{preset}-{recipe}"
    flags = ["--data", str(text), "--out_dir", str(run_dir), "--overwrite", "--preset", preset,
             "--recipe", recipe, "--batch_size", str(batch_size), "--block_size", str(block_size),
             "--max_iters", str(warmup + steps), "--eval_interval", str(warmup or steps),
             "--eval_tokens", str(2 * block_size), "--sample_chars", "0", "--seed", "0",
             "--device", precision.device.type, "--dtype", str(precision.dtype).removeprefix("torch."),
             "--compile", "on" if precision.compile else "off"]
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve().parent / "train.py"), *flags],
                          capture_output=True, text=True, encoding="utf-8", errors="replace")
    if proc.returncode:
        last_line = (proc.stderr.strip().splitlines() or ["?"])[-1]
        raise CLIError(f"train.py {' '.join(flags)} failed (exit {proc.returncode}): {last_line}",
                       EXIT_FAILED)
    tokens_per_s = read_metrics(run_dir / "metrics.csv")[-1]["tokens_per_s"]
    compiled = re.search(r"compiled the model in ([\d.]+)s", proc.stdout)
    pieces = {k: v for k, v in RECIPES[recipe].items() if k != "optimizer"}
    params = GPT(replace(PRESETS[preset], vocab_size=65, block_size=block_size, **pieces)).num_params()
    return {"params": params, "s_per_step": batch_size * block_size / tokens_per_s,
            "tokens_per_s": tokens_per_s, "compile_s": float(compiled.group(1)) if compiled else 0.0}


def time_generation(preset: str, new_tokens: int, device: torch.device, use_cache: bool,
                    window: str = "shift", dtype: torch.dtype = torch.float32, repeats: int = 1) -> float:
    """Tokens per second generating new_tokens from a one-token prompt, the median of `repeats` runs (weights
    are random: speed does not care)."""
    torch.manual_seed(0)
    model = GPT(replace(PRESETS[preset], vocab_size=65)).to(device, dtype).eval()
    start = torch.zeros((1, 1), dtype=torch.long, device=device)
    sampling = dict(use_cache=use_cache, window=window)
    generate(model, start, 2, **sampling)  # warm-up
    rates = []
    for _ in range(repeats):
        synchronize(device)
        t0 = time.perf_counter()
        generate(model, start, new_tokens, temperature=1.0, generator=torch.Generator().manual_seed(0),
                 **sampling)
        synchronize(device)
        rates.append(new_tokens / (time.perf_counter() - t0))
    return sorted(rates)[len(rates) // 2]


def half_width_dtype(device: torch.device) -> torch.dtype:
    """The 16-bit dtype generation's weights are measured in on this device: bfloat16 where it is native (or
    on a CPU, to show what it costs there), float16 elsewhere."""
    native_bf16 = device.type == "cpu" or (device.type == "cuda"
                                           and torch.cuda.is_bf16_supported(including_emulation=False))
    return torch.bfloat16 if native_bf16 else torch.float16


# The ways of generating that bench.py times, by name: (use_cache, window, half-width weights).
GENERATION_WAYS = {"recompute": (False, "slide", False), "slide": (True, "slide", False),
                   "shift": (True, "shift", False), "shift_half": (True, "shift", True)}


def generation_rates(preset: str, new_tokens: int, device: torch.device, repeats: int) -> dict[str, float]:
    """Tokens/s for each of GENERATION_WAYS: full recomputation of the window at every step (nanoGPT's
    sample.py), the KV cache with the slide and shift windows, and shift with half-width weights."""
    half = half_width_dtype(device)
    return {name: time_generation(preset, new_tokens, device, use_cache, window,
                                  half if halved else torch.float32, repeats)
            for name, (use_cache, window, halved) in GENERATION_WAYS.items()}


def generation_table(presets: list[str], new_tokens: int, device: torch.device, repeats: int) -> list[str]:
    """Markdown lines: generation_rates per preset, and the speed-ups of shift over recomputation."""
    fast = str(half_width_dtype(device)).removeprefix("torch.")
    lines = ["", f"Generation, {new_tokens} new tokens from a one-token prompt, batch 1, tokens/s, the "
             f"median of {repeats} run{'s' * (repeats > 1)} (recompute: the whole window at every step, as "
             "nanoGPT's sample.py; slide: the same window, cached while the text fits; shift: keeps the last "
             "half of a full window and goes on cached; float32 unless named):", "",
             f"| preset | recompute | slide, cached | shift, cached | shift, cached, {fast} weights "
             f"| shift / recompute | shift {fast} / recompute |", "|---|---:|---:|---:|---:|---:|---:|"]
    print("\n".join(lines), flush=True)
    for preset in presets:
        r = generation_rates(preset, new_tokens, device, repeats)
        lines.append(f"| {preset} | {r['recompute']:,.0f} | {r['slide']:,.0f} | {r['shift']:,.0f} | "
                     f"{r['shift_half']:,.0f} | {r['shift'] / r['recompute']:.1f}x | "
                     f"{r['shift_half'] / r['recompute']:.1f}x |")
        print(lines[-1], flush=True)
    return lines


def make_big_text(path: Path, megabytes: int, source: Path) -> None:
    """Write about megabytes MB of text: source's lines in a seeded random order, with a line of other scripts
    now and then so the vocabulary is wider than English's."""
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    extra = ["Ἐν ἀρχῇ ἦν ὁ λόγος.\n", "В начале было Слово.\n",
             "太初有道。\n", "🎭 Exeunt omnes.\n"]
    rng = random.Random(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    target = megabytes * 1_000_000
    with open(path, "w", encoding="utf-8") as f:
        written = 0
        while written < target:
            chunk = "".join(rng.choice(extra) if rng.random() < 0.01 else rng.choice(lines)
                            for _ in range(10_000))
            written += f.write(chunk)  # characters, a little under bytes: close enough for a size label


# Runs a script as __main__ and, on the way out, reports the process's memory. VmHWM is the high-water mark of
# its resident memory since it started (getrusage's ru_maxrss would also count the torch-importing parent that
# forked it). Resident memory includes pages of memory-mapped files, which the kernel maps in as they are read
# and can drop at any time; RssAnon, read at exit, is the memory the process itself allocated.
PEAK_MEMORY_WRAPPER = """
import atexit, runpy, sys
def report():
    with open("/proc/self/status") as f:
        status = dict(line.split(":", 1) for line in f)
    print(f"memory_kb={int(status['VmHWM'].split()[0])},{int(status['RssAnon'].split()[0])}", file=sys.stderr)
atexit.register(report)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_measured(script: str, *args: str) -> tuple[float, float, float, str]:
    """Run `python script args` in a fresh process; return its wall seconds, its peak resident memory and its
    allocated (anonymous) memory at exit, both in MB, and its stdout. A failure is a CLIError with its last
    stderr line. Linux only (it reads /proc)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", PEAK_MEMORY_WRAPPER, script, *args],
                          cwd=Path(__file__).resolve().parent, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    last = (proc.stderr.strip().splitlines() or ["?"])[-1]
    if proc.returncode or not last.startswith("memory_kb="):
        raise CLIError(f"{script} {' '.join(args[:2])} ... failed: {last}", 1)
    peak_kb, anon_kb = (int(v) for v in last.removeprefix("memory_kb=").split(","))
    return seconds, peak_kb / 1024, anon_kb / 1024, proc.stdout


def time_encoding(text_path: Path, cache_dir: Path, kind: str, vocab_size: int) -> dict:
    """Seconds and peak memory of dataset.prepare() in a fresh Python process (which does not import
    torch)."""
    _, peak_mb, _, out = run_measured("extras/dataset.py", str(text_path), "--cache_dir", str(cache_dir),
                                   "--tokenizer", kind, "--vocab_size", str(vocab_size))
    return {**json.loads(out.strip().splitlines()[-1]), "peak_mb": peak_mb}


def encoding_table(megabytes: int, work_dir: Path, bpe_vocab: int) -> list[str]:
    """Markdown lines: first and cached prepare() of a generated text, char and BPE; then training's peak
    memory on that text against Tiny Shakespeare's."""
    if not DEFAULT_DATA.exists():
        raise CLIError(f"the encoding benchmark builds its text from Tiny Shakespeare at {DEFAULT_DATA}; "
                       "run train.py once")
    text_path = work_dir / f"text-{megabytes}MB.txt"
    if not text_path.exists():
        make_big_text(text_path, megabytes, DEFAULT_DATA)
    size_mb = text_path.stat().st_size / 1e6
    lines = ["", f"Encoding {text_path} ({size_mb:,.0f} MB; Tiny Shakespeare's lines shuffled, 1% in other "
             "scripts) with `dataset.prepare()`, each run in a fresh process. Peak memory is the whole "
             "process's, Python, numpy and tokenizers included:", "",
             "| tokenizer | run | seconds | MB/s | peak memory MB | tokens | vocab |",
             "|---|---|---:|---:|---:|---:|---:|"]
    print("\n".join(lines), flush=True)
    for kind in ("char", "bpe") if bpe_vocab else ("char",):
        cache_dir = work_dir / f"cache-{kind}"
        for f in cache_dir.glob("*"):  # the first run must really encode
            f.unlink()
        for run in ("first", "cached"):
            r = time_encoding(text_path, cache_dir, kind, bpe_vocab)
            assert r["from_cache"] == (run == "cached")
            name = kind if kind == "char" else f"bpe {bpe_vocab}"
            lines.append(f"| {name} | {run} | {r['seconds']:,.1f} | {size_mb / r['seconds']:,.0f} | "
                         f"{r['peak_mb']:,.0f} | {r['tokens']:,} | {r['vocab']:,} |")
            print(lines[-1], flush=True)
    lines += ["", "Training on it: `train.py --preset tiny --max_iters 50 --device cpu` with the char cache "
              "above, against the same on Tiny Shakespeare (whole processes, torch included; resident memory "
              "counts the pages of the memory-mapped token file that batches have read, which the kernel can "
              "drop at will):", "",
              "| text | size MB | wall seconds | peak resident MB | allocated MB at exit |",
              "|---|---:|---:|---:|---:|"]
    print("\n".join(lines[-5:]), flush=True)
    for name, path, cache_dir in (("Tiny Shakespeare", DEFAULT_DATA, work_dir / "cache-shakespeare"),
                                  (text_path.name, text_path, work_dir / "cache-char")):
        flags = ["--data", str(path), "--cache_dir", str(cache_dir), "--out_dir", str(work_dir / "train-out"),
                 "--overwrite", "--preset", "tiny", "--max_iters", "50", "--eval_interval", "50",
                 "--eval_tokens", "100000", "--sample_chars", "0", "--device", "cpu"]
        run_measured("train.py", *flags)  # once to fill the cache, so the measured run is a second start
        seconds, peak_mb, anon_mb, _ = run_measured("train.py", *flags)
        lines.append(f"| {name} | {path.stat().st_size / 1e6:,.0f} | {seconds:,.1f} | {peak_mb:,.0f} | "
                     f"{anon_mb:,.0f} |")
        print(lines[-1], flush=True)
    return lines


def first_and_best(metrics_path: Path, target: float) -> tuple[dict | None, dict, dict]:
    """From a run's metrics.csv: the first evaluation at or below target (None if none), the best, and the
    last."""
    rows = read_metrics(metrics_path)
    hit = next((r for r in rows if r["val_loss"] <= target), None)
    return hit, min(rows, key=lambda r: r["val_loss"]), rows[-1]


def time_to_target(metrics_path: Path, target: float) -> str:
    """The first evaluation in a run's metrics.csv whose val loss is at or below target, as a sentence."""
    hit, best, _ = first_and_best(metrics_path, target)
    if hit is None:
        return (f"{metrics_path}: val loss never reached {target} (best {best['val_loss']:.4f} at step "
                f"{best['step']:.0f})")
    return (f"{metrics_path}: val loss {hit['val_loss']:.4f} <= {target} first at step {hit['step']:.0f}, "
            f"{hit['elapsed_s']:.1f}s into training (best {best['val_loss']:.4f} at step {best['step']:.0f})")


def compare_runs(folder: Path) -> list[str]:
    """Markdown lines: one row per variant in folder (folder/VARIANT/seedN/, as docs/ablate.sh lays out
    train.py runs), with its final full-val loss per seed, the mean loss and bits per character, training
    tokens/s and the parameter count. The flags come from VARIANT/flags.txt where there is one."""
    variants = sorted(p for p in folder.iterdir() if p.is_dir() and any(p.glob("seed*/metrics.csv")))
    if not variants:
        raise CLIError(f"no finished runs under {folder} (expected {folder}/VARIANT/seedN/metrics.csv)")
    lines = ["| variant | flags | parameters | val loss per seed | mean val loss | bits/char | tokens/s "
             "| steps |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for variant in variants:
        runs = sorted(variant.glob("seed*/metrics.csv"))
        # The last evaluation's row: its loss, and tokens/s over the steps since the evaluation before (with
        # docs/ablate.sh's one evaluation at the start and one at the end, that is the whole run's training
        # speed).
        finals = [read_metrics(m)[-1] for m in runs]
        config = torch.load(runs[0].parent / "last.pt", map_location="cpu", weights_only=True)
        n_params = GPT(GPTConfig(**config["model_config"])).num_params()
        losses = [r["val_loss"] for r in finals]
        flags = ((variant / "flags.txt").read_text(encoding="utf-8").strip()
                 if (variant / "flags.txt").exists() else "")
        lines.append(f"| {variant.name} | `{flags}` | {n_params:,} | "
                     f"{' / '.join(f'{v:.4f}' for v in losses)} | {sum(losses) / len(losses):.4f} | "
                     f"{sum(r['val_bpc'] for r in finals) / len(finals):.3f} | "
                     f"{sum(r['tokens_per_s'] for r in finals) / len(finals):,.0f} | "
                     f"{' / '.join(str(int(r['step'])) for r in finals)} |")
        print(lines[-1], flush=True)
    return lines


def machine_line(device: torch.device) -> str:
    """What this ran on, for the record."""
    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else platform.processor() or platform.machine())
    if device.type == "cpu":
        name += f"; {cpu_class()}"  # the class decides which dtypes are fast here
    return (f"Device: {device} ({name}); {torch.get_num_threads()} CPU threads; torch {torch.__version__}; "
            f"Python {platform.python_version()}; {time.strftime('%Y-%m-%d')}.")


# train.py's defaults for AdamW, so the optimizer step timed here is the one training takes.
LEARNING_RATE, WEIGHT_DECAY, BETAS = 1e-3, 0.1, (0.9, 0.99)


def time_optimizer_step(preset: str, fused: bool, steps: int, warmup: int, device: torch.device) -> float:
    """Seconds per AdamW step (the update alone, gradients already there) for preset's parameters."""
    torch.manual_seed(0)
    model = GPT(replace(PRESETS[preset], vocab_size=65)).to(device)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    # fused=False leaves the choice to torch: the multi-tensor ("foreach") kernels, what train.py used before.
    [optimizer] = configure_optimizer(model, LEARNING_RATE, WEIGHT_DECAY, BETAS, device, fused=fused)
    for i in range(warmup + steps):
        if i == warmup:
            synchronize(device)
            t0 = time.perf_counter()
        optimizer.step()
    synchronize(device)
    return (time.perf_counter() - t0) / steps


def optimizer_table(presets: list[str], steps: int, warmup: int, device: torch.device) -> list[str]:
    """Markdown lines: AdamW step time per preset, the multi-tensor kernels against the fused one."""
    lines = ["", f"AdamW step alone (gradients given), {steps} timed steps after {warmup} warm-up, float32, "
             "foreach and fused alternated three times, median:", "",
             "| preset | parameters | foreach ms/step | fused ms/step | fused speed-up |",
             "|---|---:|---:|---:|---:|"]
    print("\n".join(lines), flush=True)
    for preset in presets:
        times = {False: [], True: []}
        for _ in range(3):  # alternate, so drift in the machine's speed hits both alike
            for fused in (False, True):
                times[fused].append(time_optimizer_step(preset, fused, steps, warmup, device))
        foreach_s, fused_s = (sorted(times[f])[1] for f in (False, True))
        n_params = GPT(replace(PRESETS[preset], vocab_size=65)).num_params()
        lines.append(f"| {preset} | {n_params:,} | {1000 * foreach_s:,.2f} | {1000 * fused_s:,.2f} | "
                     f"{foreach_s / fused_s:.2f}x |")
        print(lines[-1], flush=True)
    return lines


def matmul_gflops(n: int, dtype: torch.dtype, device: torch.device, repeats: int) -> float:
    """GFLOP/s of an n x n by n x n matmul in dtype, the median of `repeats` timings after one warm-up."""
    a, b = (torch.randn(n, n, generator=torch.Generator().manual_seed(i)).to(device, dtype) for i in (0, 1))
    a @ b
    times = []
    for _ in range(repeats):
        synchronize(device)
        t0 = time.perf_counter()
        a @ b
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / sorted(times)[len(times) // 2] / 1e9


def matmul_table(sizes: list[int], device: torch.device, repeats: int) -> list[str]:
    """Markdown lines: matmul GFLOP/s in float32 and bfloat16 per size. Where bfloat16 is emulated (most CPUs
    without AVX-512 BF16, T4 and V100 GPUs) it is many times slower than float32; where it is native,
    faster."""
    lines = ["", f"One n x n matmul, GFLOP/s, the median of {repeats} (bfloat16 native here, by "
             "precision.cpu_has_native_bfloat16: "
             f"{cpu_has_native_bfloat16() if device.type == 'cpu' else 'n/a'}):",
             "", "| n | float32 | bfloat16 | float32 / bfloat16 |", "|---:|---:|---:|---:|"]
    print("\n".join(lines), flush=True)
    for n in sizes:
        f32, bf16 = (matmul_gflops(n, dtype, device, repeats) for dtype in (torch.float32, torch.bfloat16))
        lines.append(f"| {n} | {f32:,.1f} | {bf16:,.1f} | {f32 / bf16:,.2f}x |")
        print(lines[-1], flush=True)
    return lines


def gpu_check(smoke: bool, target_loss: float, work_dir: Path,
              data: Path | None) -> tuple[list[str], list[str]]:
    """The GPU check (docs/gpu_check.sh) as markdown lines: one table of the `gpu` tests' result, training
    speed per preset in the device's dtype with compile off and on, generation speed per preset, and medium
    train.py runs, one per recipe, each with its time to target_loss and best val loss; and the names of the
    checks that failed. With smoke, tiny sizes on whatever device this is (a CPU in the tests), to check the
    plumbing."""
    precision = make_precision("auto", "auto", "off")
    device = precision.device
    if device.type == "cpu" and not smoke:
        smoke_run = shell_command("python", "bench.py", "--gpu_check", "--smoke")
        raise CLIError("no CUDA GPU or Apple MPS here, so the GPU check has nothing to measure "
                       f"(`{smoke_run}` runs its steps on a CPU at toy sizes)", EXIT_FAILED)
    root = Path(__file__).resolve().parent
    name = (f"{torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}" if device.type == "cuda"
            else {"mps": "Apple MPS"}.get(device.type, device.type))
    title = (f"GPU check on {name}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}"
             + (" (smoke run: toy sizes)" if smoke else ""))
    lines = [title, "", "| check | result |", "|---|---|"]
    print("\n".join(lines), flush=True)

    def row(check: str, result: str) -> None:
        lines.append(f"| {check} | {result} |")
        print(lines[-1], flush=True)

    failed = []  # the checks that failed: the command then exits 1, after writing the table
    marker = "mps" if device.type == "mps" else "gpu"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", marker,
                           "tests"], cwd=root, capture_output=True, text=True)
    passed, summary = pytest_verdict(proc.returncode, proc.stdout, must_run=not smoke)
    row(f"`pytest -m {marker}`",
        f"{summary}: " + ("passed" if passed else f"FAILED (exit {proc.returncode})"))
    if not passed:
        failed.append(f"pytest -m {marker}")

    presets, batch, block, steps, warmup = ((["tiny"], 4, 32, 2, 1) if smoke
                                            else (list(PRESETS), 64, 256, 20, 5))
    dtype_name = str(precision.dtype).removeprefix("torch.")
    for preset in presets:
        for use_compile in (False, True):
            check = (f"{preset}, batch {batch} x {block}, {dtype_name}, "
                     f"compile {'on' if use_compile else 'off'}")
            if smoke and use_compile:  # inductor compiles for a CPU too, but takes minutes there
                row(check, "not timed in a smoke run")
                continue
            r = time_training(preset, batch, block, steps, warmup, replace(precision, compile=use_compile),
                              work_dir=work_dir / "gpu-check-speed")
            row(f"{preset}, batch {batch} x {block}, {dtype_name}, compile {'on' if use_compile else 'off'}",
                f"{1000 * r['s_per_step']:,.1f} ms/step, {r['tokens_per_s']:,.0f} tokens/s"
                + (f", compiled in {r['compile_s']:.1f} s" if use_compile else ""))

    new_tokens, repeats = (20, 1) if smoke else (500, 3)
    for preset in presets:
        r = generation_rates(preset, new_tokens, device, repeats)
        row(f"{preset}, generating {new_tokens} tokens, batch 1",
            f"recompute {r['recompute']:,.0f} tokens/s, slide cached {r['slide']:,.0f}, shift cached "
            f"{r['shift']:,.0f}, shift cached with {str(half_width_dtype(device)).removeprefix('torch.')} "
            f"weights {r['shift_half']:,.0f}")

    # The workshop's medium run, with the GPT-2 recipe and then the modern one (docs/ablate.sh measures the
    # pieces on a CPU; this is the same comparison at the GPU's size): time to target_loss and best val loss
    # of each.
    for recipe in RECIPES:
        run_dir = work_dir / f"gpu-check-run-{recipe}"
        flags = (["--preset", "tiny", "--n_layer", "1", "--n_embd", "32", "--block_size", "32",
                  "--batch_size", "8", "--max_iters", "20", "--eval_interval", "10"] if smoke
                 else ["--preset", "medium"]) + ["--recipe", recipe]
        if data is not None:
            flags += ["--data", str(data)]
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "train.py", *flags, "--out_dir", str(run_dir), "--overwrite",
                               "--sample_chars", "0"], cwd=root, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode:
            row(f"`train.py {' '.join(flags)}`", f"FAILED (exit {proc.returncode}): "
                + (proc.stderr.strip().splitlines() or ["?"])[-1].replace("|", "/"))
            failed.append(f"train.py --recipe {recipe}")
            continue
        hit, best, last = first_and_best(run_dir / "metrics.csv", target_loss)
        run_name = f"{'tiny (smoke)' if smoke else 'medium'}, recipe {recipe}"
        row(f"{run_name}: time to val loss {target_loss}", "not reached" if hit is None else
            f"{hit['elapsed_s']:.1f} s of training (step {hit['step']:.0f})")
        row(f"{run_name}: best val loss", f"{best['val_loss']:.4f} at step {best['step']:.0f}; "
            f"{last['step']:.0f} steps in {last['elapsed_s']:.1f} s of training, {wall:.0f} s wall")
    return lines, failed


def pytest_verdict(returncode: int, output: str, must_run: bool) -> tuple[bool, str]:
    """Whether a pytest run passed, and its summary line ("3 passed, 5 skipped, 400 deselected in 9.1s"). It
    passed only if pytest exited 0 and counted no failure or error, and some test passed (must_run: on a GPU,
    where the gpu tests must run) or at least ran and skipped. A collection error (exit 2), no test at all
    (exit 5) or every gpu test skipped on a GPU fails, however the output looks."""
    summaries = [line.strip("= ") for line in output.splitlines()
                 if re.search(r" in [\d.]+s( \([\d:]+\))?[ =]*$", line)]
    summary = summaries[-1] if summaries else "no summary line"
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|skipped|failed|errors?)\b", summary)}
    ran = counts.get("passed", 0) + (0 if must_run else counts.get("skipped", 0))
    bad = counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0)
    return returncode == 0 and bad == 0 and ran > 0, summary


def main(argv=None) -> int:
    """Command-line entry point."""
    parser = FlagParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default=",".join(PRESETS), help="comma-separated presets to time")
    parser.add_argument("--recipes", default="gpt2",
                        help="comma-separated train.py recipes to time each preset with (gpt2, modern)")
    parser.add_argument("--batch_size", type=int, default=64, help="sequences per training step")
    parser.add_argument("--block_size", type=int, default=256, help="training context length")
    parser.add_argument("--steps", type=int, default=5,
                        help="timed training steps per preset (0: skip training)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed training steps first")
    parser.add_argument("--new_tokens", type=int, default=500,
                        help="tokens to generate per measurement (0: skip generation)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="generation: runs per measurement, the median reported")
    parser.add_argument("--compile", default="off", choices=["on", "off"],
                        help="torch.compile the training step")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                        help="training autocast dtype, as train.py --dtype (auto: what train.py uses on the "
                             "device)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                        help="device to measure")
    parser.add_argument("--quick", action="store_true",
                        help="tiny preset, tiny batch, few tokens: a smoke test in seconds")
    parser.add_argument("--metrics", default=None,
                        help="instead of timing: read a run's metrics.csv and report time to --target_loss")
    parser.add_argument("--target_loss", type=float, default=1.47, help="val loss for --metrics")
    parser.add_argument("--data_mb", type=int, default=0,
                        help="instead of timing the model: encode a generated text of this many MB")
    parser.add_argument("--bpe_vocab", type=int, default=1024,
                        help="BPE vocabulary size for --data_mb (0: char only)")
    parser.add_argument("--optimizer_step", action="store_true",
                        help="instead: time the AdamW step alone per preset, multi-tensor against fused "
                             "(--steps, --warmup)")
    parser.add_argument("--matmul", action="store_true",
                        help="instead: matmul GFLOP/s in float32 and bfloat16 (128, 384, 1024): is bfloat16 "
                             "native here?")
    parser.add_argument("--gpu_check", action="store_true",
                        help="the GPU check (docs/gpu_check.sh): gpu tests, speed per preset, a medium run "
                             "to --target_loss")
    parser.add_argument("--smoke", action="store_true",
                        help="with --gpu_check: tiny sizes, runs on a CPU (tests its plumbing)")
    parser.add_argument("--data", default=None,
                        help="with --gpu_check: the text to train on (default: Tiny Shakespeare)")
    parser.add_argument("--compare", default=None,
                        help="instead of timing: table the train.py runs under this folder "
                             "(FOLDER/VARIANT/seedN, as docs/ablate.sh writes)")
    parser.add_argument("--out", default="out/bench.md", help="markdown file for the results")
    return run_cli(lambda: measure(parser.parse_args(argv)))


def write_lines(lines: list[str], out: Path) -> None:
    """Write the markdown lines to out (they have been printed as they came)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"written to {out}")


def measure(args) -> int:
    """Run the measurement the flags ask for and write its tables to args.out."""
    if args.metrics:
        if not Path(args.metrics).is_file():
            raise CLIError(f"no metrics file at {args.metrics}; pass the metrics.csv a train.py run wrote")
        print(time_to_target(Path(args.metrics), args.target_loss))
        return 0
    if args.compare:
        if not Path(args.compare).is_dir():
            raise CLIError(f"no folder {args.compare}; run docs/ablate.sh first")
        write_lines([machine_line(torch.device("cpu"))] + compare_runs(Path(args.compare)), Path(args.out))
        return 0
    if args.data_mb:
        lines = ([machine_line(torch.device("cpu"))]
                 + encoding_table(args.data_mb, Path("out/bench-data"), args.bpe_vocab))
        write_lines(lines, Path(args.out))
        return 0
    if args.gpu_check:
        data = Path(args.data) if args.data else None
        lines, failed = gpu_check(args.smoke, args.target_loss, Path(args.out).parent, data)
        write_lines(lines, Path(args.out))
        if failed:
            raise CLIError(f"the GPU check failed: {', '.join(failed)} (the table in {args.out} says how)",
                           EXIT_FAILED)
        return 0
    if args.quick:
        (args.presets, args.batch_size, args.block_size, args.steps, args.warmup,
         args.new_tokens) = "tiny", 4, 32, 2, 1, 20
        args.repeats = 1
    presets = args.presets.split(",")
    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        raise CLIError(f"unknown preset(s) {', '.join(unknown)}; choose from {', '.join(PRESETS)}")
    recipes = tuple(args.recipes.split(","))
    unknown = [r for r in recipes if r not in RECIPES]
    if unknown:
        raise CLIError(f"unknown recipe(s) {', '.join(unknown)}; choose from {', '.join(RECIPES)}")
    if (min(args.batch_size, args.block_size, args.repeats) < 1
            or min(args.steps, args.warmup, args.new_tokens) < 0):
        raise CLIError("--batch_size, --block_size and --repeats must be positive, --steps, --warmup and "
                       "--new_tokens >= 0")
    precision = make_precision(args.device, args.dtype, args.compile)
    device = precision.device

    lines = [machine_line(device)]
    print(lines[0], flush=True)
    if args.optimizer_step:
        write_lines(lines + optimizer_table(presets, max(args.steps, 1), args.warmup, device), Path(args.out))
        return 0
    if args.matmul:
        write_lines(lines + matmul_table([128, 384, 1024], device, args.repeats), Path(args.out))
        return 0
    if args.steps:
        lines += training_table(presets, args.batch_size, args.block_size, args.steps, args.warmup, precision,
                                recipes, Path(args.out).parent / "bench-train")
    if args.new_tokens:
        lines += generation_table(presets, args.new_tokens, device, args.repeats)
    write_lines(lines, Path(args.out))
    return 0


def training_table(presets: list[str], batch_size: int, block_size: int, steps: int, warmup: int,
                   precision: Precision, recipes: tuple[str, ...] = ("gpt2",),
                   work_dir: Path = Path("out/bench-train")) -> list[str]:
    """Markdown lines: ms/step, tokens/s and compile seconds per preset and recipe, in precision's dtype."""
    dtype_name = str(precision.dtype).removeprefix("torch.")
    muon_dtype, muon_why = pick_muon_dtype(precision.device)
    muon = (f", Muon's Newton-Schulz in {str(muon_dtype).removeprefix('torch.')} ({muon_why})"
            if any(RECIPES[r]["optimizer"] == "muon" for r in recipes) else "")
    lines = ["", f"Training, batch {batch_size} x {block_size}, {dtype_name}, compile "
             f"{'on' if precision.compile else 'off'}{muon}, {steps} timed steps after {warmup} warm-up:", "",
             "| preset | recipe | parameters | ms/step | tokens/s | compile s |",
             "|---|---|---:|---:|---:|---:|"]
    print("\n".join(lines), flush=True)
    for preset in presets:
        for recipe in recipes:
            r = time_training(preset, batch_size, block_size, steps, warmup, precision, recipe, work_dir)
            lines.append(f"| {preset} | {recipe} | {r['params']:,} | {1000 * r['s_per_step']:,.1f} | "
                         f"{r['tokens_per_s']:,.0f} | {r['compile_s']:.1f} |")
            print(lines[-1], flush=True)
    return lines


if __name__ == "__main__":
    sys.exit(main())
