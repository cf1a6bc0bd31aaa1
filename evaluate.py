"""Print the full-validation loss of a checkpoint: the number every loss figure in the docs uses.

    python evaluate.py                         # out/best.pt on the text it was trained on
    python evaluate.py --checkpoint out/last.pt --data my.txt

The loss is the mean cross-entropy over every token of the validation split (the last 10% of the text), read in
non-overlapping windows of the model's block_size: each token is predicted exactly once. Bits per character divide
the total by the characters those tokens hold, so char and BPE models compare.
"""

import math
import sys
from pathlib import Path

import torch

from dataset import DataError, prepare
from model import GPT, GPTConfig
from tokenizer import tokenizer_from_checkpoint
from train import DEFAULT_DATA, CLIError, FlagParser, eval_windows, evaluate, load_checkpoint, pick_device


def main(argv=None) -> int:
    """Command-line entry point."""
    parser = FlagParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="out/best.pt", help="checkpoint written by train.py")
    parser.add_argument("--data", default=None, help="text file (default: the one the checkpoint was trained on)")
    parser.add_argument("--cache_dir", default=None, help="token cache folder (default: the training run's)")
    parser.add_argument("--batch_size", type=int, default=64, help="windows per forward pass (does not change the result)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"], help="auto picks cuda, then mps, then cpu")
    try:
        args = parser.parse_args(argv)
        if args.batch_size < 1:
            raise CLIError(f"--batch_size must be positive, got {args.batch_size}")
        checkpoint = load_checkpoint(Path(args.checkpoint))
        device, _ = pick_device(args.device)
        train_config = checkpoint.get("train_config", {})
        data_path = Path(args.data or train_config.get("data") or DEFAULT_DATA)
        cache_dir = Path(args.cache_dir or train_config.get("cache_dir") or Path(train_config.get("out_dir", "out")) / "cache")
        try:
            tokenizer = tokenizer_from_checkpoint(checkpoint)
            data = prepare(data_path, cache_dir, tokenizer=tokenizer)
        except DataError as e:
            raise CLIError(f"{e}; evaluate on text the checkpoint's tokenizer can encode" if "vocabulary" in str(e) else str(e)) from None
        except ValueError as e:
            raise CLIError(f"{args.checkpoint} holds a tokenizer this version cannot read ({e})") from None
        if len(data.val) < 2:
            raise CLIError(f"{data_path} is too short to have a validation split")
        model_cfg = GPTConfig(**checkpoint["model_config"])
        model = GPT(model_cfg)
        model.load_state_dict(checkpoint["model"])
        model.to(device)
        x, y = eval_windows(torch.from_numpy(data.val.astype("int64")).to(device), model_cfg.block_size)
        loss = evaluate(model, x, y, args.batch_size)
    except CLIError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.code
    n_tokens = int((y != -1).sum())
    n_chars = len(tokenizer.decode(data.val[1:].tolist()))  # the characters those predicted tokens spell
    bits_per_char = loss * n_tokens / n_chars / math.log(2)
    print(f"full val loss {loss:.4f} per token (perplexity {math.exp(loss):.2f}), {bits_per_char:.4f} bits per character, "
          f"over {n_tokens:,} tokens ({n_chars:,} characters) of {data_path} | {args.checkpoint}, step {checkpoint['step']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
