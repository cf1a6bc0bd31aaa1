"""Print the full-validation loss of a checkpoint: the number every loss figure in the docs uses.

    python evaluate.py                         # out/best.pt on the text it was trained on
    python evaluate.py --checkpoint out/last.pt --data my.txt

The loss is the mean cross-entropy over every character of the validation split (the last 10% of the text), read
in non-overlapping windows of the model's block_size: each character is predicted exactly once.
"""

import math
import sys
from pathlib import Path

import torch

from model import GPT, GPTConfig
from tokenizer import CharTokenizer
from train import (DEFAULT_DATA, CLIError, FlagParser, eval_windows, evaluate, load_checkpoint, load_text, pick_device,
                   split_data)


def main(argv=None) -> int:
    """Command-line entry point."""
    parser = FlagParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="out/best.pt", help="checkpoint written by train.py")
    parser.add_argument("--data", default=None, help="text file (default: the one the checkpoint was trained on)")
    parser.add_argument("--batch_size", type=int, default=64, help="windows per forward pass (does not change the result)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"], help="auto picks cuda, then mps, then cpu")
    try:
        args = parser.parse_args(argv)
        if args.batch_size < 1:
            raise CLIError(f"--batch_size must be positive, got {args.batch_size}")
        checkpoint = load_checkpoint(Path(args.checkpoint))
        device, _ = pick_device(args.device)
        data_path = Path(args.data or checkpoint.get("train_config", {}).get("data") or DEFAULT_DATA)
        text = load_text(data_path)
        tokenizer = CharTokenizer(checkpoint["vocab"])
        try:
            ids = torch.from_numpy(tokenizer.encode(text).astype("int64"))
        except ValueError as e:
            raise CLIError(f"{data_path}: {e}; evaluate on text in the checkpoint's vocabulary") from None
        model_cfg = GPTConfig(**checkpoint["model_config"])
        model = GPT(model_cfg)
        model.load_state_dict(checkpoint["model"])
        model.to(device)
        _, val = split_data(ids.to(device))
        if len(val) < 2:
            raise CLIError(f"{data_path} is too short to have a validation split")
        x, y = eval_windows(val, model_cfg.block_size)
        loss = evaluate(model, x, y, args.batch_size)
    except CLIError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.code
    print(f"full val loss {loss:.4f} (perplexity {math.exp(loss):.2f}, {loss / math.log(2):.4f} bits per character) "
          f"over {int((y != -1).sum()):,} characters of {data_path} | {args.checkpoint}, step {checkpoint['step']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
