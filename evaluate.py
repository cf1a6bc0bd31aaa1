"""Print the full-validation loss of a checkpoint: the number every loss figure in the docs uses.

    python evaluate.py                         # out/best.pt on the text it was trained on
    python evaluate.py --checkpoint out/last.pt --data my.txt
    python evaluate.py --block_size 128 --weights_dtype bfloat16
                                               # what a shorter context, bfloat16 weights cost

The loss is the mean cross-entropy over every token of the validation split (the last 10% of the text), read
in non-overlapping windows of the model's block_size: each token is predicted exactly once. The split streams
from the token cache's memory map a batch of windows at a time, so a corpus of any size evaluates in the same
memory. Bits per character divide the total by the characters those tokens hold, so char and BPE models
compare. The device, dtype and evaluation code are training's (precision.py, evaluation.py): on the same
device, this prints the val loss the run logged for the checkpoint.
"""

import argparse
import math
import sys
from pathlib import Path

from extras.bpe import count_chars
from extras.checkpoint import load_checkpoint, model_from_checkpoint, tokenizer_from_checkpoint
from extras.cli import CLIError, FlagParser, run_cli
from extras.dataset import DEFAULT_DATA, DataError, prepare
from extras.evaluation import EVAL_BATCH_SIZE, eval_windows, evaluate
from extras.precision import DTYPES, make_precision


def main(argv=None) -> int:
    """Command-line entry point."""
    parser = FlagParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="out/best.pt", help="checkpoint written by train.py")
    parser.add_argument("--data", default=None,
                        help="text file (default: the one the checkpoint was trained on)")
    parser.add_argument("--cache_dir", default=None, help="token cache folder (default: the training run's)")
    parser.add_argument("--batch_size", type=int, default=EVAL_BATCH_SIZE,
                        help="windows per forward pass (training's evaluations use the default)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                        help="auto picks cuda, then mps, then cpu")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                        help="autocast dtype, as train.py --dtype (auto: what training uses on this device)")
    parser.add_argument("--block_size", type=int, default=None,
                        help="read the text in windows of this many tokens, at most the checkpoint's "
                             "(default): what a shorter context costs, e.g. generate.py's shift window, "
                             "which sees half to all of it")
    parser.add_argument("--weights_dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                        help="cast the weights to this dtype first, as generate.py --dtype does: what that "
                             "costs in loss")
    return run_cli(lambda: report(parser.parse_args(argv)))


def report(args: argparse.Namespace) -> int:
    """Evaluate args.checkpoint on the val split of its text and print the result."""
    if args.batch_size < 1:
        raise CLIError(f"--batch_size must be positive, got {args.batch_size}")
    checkpoint = load_checkpoint(Path(args.checkpoint))
    trained_block = checkpoint["model_config"]["block_size"]
    block_size = args.block_size or trained_block
    if not 1 <= block_size <= trained_block:
        raise CLIError(f"--block_size must be between 1 and {trained_block}, the context this model was "
                       f"trained with; got {block_size}")
    precision = make_precision(args.device, args.dtype, "off")
    train_config = checkpoint.get("train_config", {})
    data_path = Path(args.data or train_config.get("data") or DEFAULT_DATA)
    cache_dir = Path(args.cache_dir or train_config.get("cache_dir")
                     or Path(train_config.get("out_dir", "out")) / "cache")
    try:
        tokenizer = tokenizer_from_checkpoint(checkpoint)
        data = prepare(data_path, cache_dir, tokenizer=tokenizer)
    except DataError as e:
        raise CLIError(f"{e}; evaluate on text the checkpoint's tokenizer can encode"
                       if "vocabulary" in str(e) else str(e)) from None
    except ValueError as e:
        raise CLIError(f"{args.checkpoint} holds a tokenizer this version cannot read ({e})") from None
    if len(data.val) < 2:
        raise CLIError(f"{data_path} is too short to have a validation split")
    model = model_from_checkpoint(checkpoint, precision.device).to(DTYPES[args.weights_dtype])
    loss = evaluate(model, eval_windows(data.val, block_size, args.batch_size), precision)
    n_tokens = len(data.val) - 1  # every val token but the first is predicted once
    n_chars = count_chars(tokenizer, data.val[1:])  # the characters those predicted tokens spell
    bits_per_char = loss * n_tokens / n_chars / math.log(2)
    print(f"full val loss {loss:.4f} per token (perplexity {math.exp(loss):.2f}), {bits_per_char:.4f} bits "
          f"per character, over {n_tokens:,} tokens ({n_chars:,} characters) of {data_path} | "
          f"{args.checkpoint}, step {checkpoint['step']}, {str(precision.dtype).removeprefix('torch.')} on "
          f"{precision.device}"
          + (f", windows of {block_size} tokens" if block_size != trained_block else "")
          + (f", {args.weights_dtype} weights" if args.weights_dtype != "float32" else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
