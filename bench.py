"""Measure training speed per preset on this machine and print a markdown table.

    python bench.py                                  # every preset, batch 64 x 256, on the auto-picked device
    python bench.py --presets tiny --steps 3         # a quick look

Each timed step is a full optimizer step (forward, backward, clip, AdamW) on random token ids, after warm-up
steps, with the device synchronised before the clock is read. Results also go to --out as markdown.
"""

import argparse
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from model import GPT, PRESETS
from train import CLIError, FlagParser, TrainConfig, configure_optimizer, get_batch, pick_device


def synchronize(device: torch.device) -> None:
    """Wait for queued device work so a timer reads real elapsed time."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    elif device.type == "mps":
        torch.mps.synchronize()


def time_training_steps(preset: str, batch_size: int, block_size: int, steps: int, warmup: int, device: torch.device) -> dict:
    """Mean seconds per optimizer step of preset at batch_size x block_size, after warmup steps."""
    torch.manual_seed(0)
    model_cfg = replace(PRESETS[preset], vocab_size=65, block_size=block_size)
    model = GPT(model_cfg).to(device)
    optimizer = configure_optimizer(model, TrainConfig(), device)
    data = torch.randint(65, (100_000,), device=device)
    generator = torch.Generator().manual_seed(0)
    for i in range(warmup + steps):
        if i == warmup:
            synchronize(device)
            t0 = time.perf_counter()
        x, y = get_batch(data, block_size, batch_size, generator)
        _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    synchronize(device)
    seconds = (time.perf_counter() - t0) / steps
    return {"preset": preset, "params": model.num_params(), "s_per_step": seconds, "tokens_per_s": batch_size * block_size / seconds}


def main(argv=None) -> int:
    """Command-line entry point."""
    parser = FlagParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--presets", default=",".join(PRESETS), help="comma-separated presets to time")
    parser.add_argument("--batch_size", type=int, default=64, help="sequences per step")
    parser.add_argument("--block_size", type=int, default=256, help="context length")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per preset")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"], help="device to measure")
    parser.add_argument("--out", default="out/bench.md", help="markdown file for the results")
    try:
        args = parser.parse_args(argv)
        presets = args.presets.split(",")
        unknown = [p for p in presets if p not in PRESETS]
        if unknown:
            raise CLIError(f"unknown preset(s) {', '.join(unknown)}; choose from {', '.join(PRESETS)}")
        if min(args.batch_size, args.block_size, args.steps) < 1 or args.warmup < 0:
            raise CLIError("--batch_size, --block_size and --steps must be positive, --warmup >= 0")
        device, reason = pick_device(args.device)
    except CLIError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.code

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    header = (f"Training speed, batch {args.batch_size} x {args.block_size}, fp32, {args.steps} timed steps after "
              f"{args.warmup} warm-up. Device: {device} ({name}), {torch.get_num_threads()} CPU threads, "
              f"torch {torch.__version__}, {time.strftime('%Y-%m-%d')}.")
    lines = [header, "", "| preset | parameters | s/step | tokens/s |", "|---|---:|---:|---:|"]
    print(header, flush=True)
    for preset in presets:
        r = time_training_steps(preset, args.batch_size, args.block_size, args.steps, args.warmup, device)
        lines.append(f"| {r['preset']} | {r['params']:,} | {r['s_per_step']:.3f} | {r['tokens_per_s']:,.0f} |")
        print(lines[-1], flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
