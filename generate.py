"""Sample text from a trained checkpoint, printing the text as it is generated.

    python generate.py --temperature 0.8 --top_k 40
    python generate.py --prompt "ROMEO:" --max_new_tokens 300 --num_samples 3

Everything needed (architecture, weights, tokenizer: a character vocabulary or a BPE) is inside the checkpoint.
"""

import argparse
import sys
from pathlib import Path

import torch

from checkpoint import load_checkpoint, model_from_checkpoint
from cli import CLIError, FlagParser, run_cli
from precision import pick_device
from tokenizer import StreamDecoder, tokenizer_from_checkpoint


def build_parser() -> FlagParser:
    """The command line of generate.py."""
    parser = FlagParser(description="Sample text from a trained checkpoint.", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--checkpoint", default="out/best.pt", help="checkpoint written by train.py")
    parser.add_argument("--prompt", default="\n", help="text the samples continue; every character must be in the model's vocabulary")
    parser.add_argument("--max_new_tokens", type=int, default=500, help="tokens to generate per sample (characters, for a char model)")
    parser.add_argument("--temperature", type=float, default=0.8, help="0 is greedy; below 1 is safer, above 1 is wilder")
    parser.add_argument("--top_k", type=int, default=40, help="sample only among the k most likely tokens (clamped to the vocabulary size)")
    parser.add_argument("--block_size", type=int, default=None, help="context the model sees while sampling (default: the checkpoint's; cannot exceed it)")
    parser.add_argument("--num_samples", type=int, default=1, help="how many samples to print")
    parser.add_argument("--seed", type=int, default=1337, help="random seed: the same seed gives the same text")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"], help="auto picks cuda, then mps, then cpu")
    return parser


def parse_args(argv) -> argparse.Namespace:
    """Parse and check the flags; out-of-range values are a CLIError."""
    args = build_parser().parse_args(argv)
    if args.temperature < 0:
        raise CLIError(f"--temperature must be >= 0 (0 means greedy), got {args.temperature}")
    if args.top_k < 1:
        raise CLIError(f"--top_k must be at least 1, got {args.top_k}")
    if args.max_new_tokens < 0 or args.num_samples < 1:
        raise CLIError("--max_new_tokens must be >= 0 and --num_samples >= 1")
    return args


def main(argv=None) -> int:
    """Command-line entry point: load the checkpoint, then stream samples to stdout."""
    return run_cli(lambda: sample(parse_args(argv)))


def sample(args: argparse.Namespace) -> int:
    """Print args.num_samples samples from args.checkpoint, each token as soon as it is drawn."""
    checkpoint = load_checkpoint(Path(args.checkpoint))
    device, _ = pick_device(args.device)
    try:
        tokenizer = tokenizer_from_checkpoint(checkpoint)
    except ValueError as e:
        raise CLIError(f"{args.checkpoint} holds a tokenizer this version cannot read ({e})") from None
    unknown = tokenizer.unknown(args.prompt)  # none for BPE: it encodes any text
    if unknown:
        raise CLIError("the prompt has characters the model never saw: " + " ".join(repr(c) for c in unknown)
                       + "; remove them or train on text that contains them")
    if not args.prompt:
        raise CLIError("--prompt must not be empty (the default is a newline)")
    trained_block = checkpoint["model_config"]["block_size"]
    if args.block_size is not None and not 1 <= args.block_size <= trained_block:
        raise CLIError(f"--block_size must be between 1 and {trained_block}, the context this model was "
                       f"trained with; got {args.block_size}")
    model = model_from_checkpoint(checkpoint, device)
    # On stderr, so stdout holds only the text. Keys and values are kept for n_kv_head heads only: grouped-query
    # attention shrinks the cache by n_head / n_kv_head.
    c, context = model.config, args.block_size or trained_block
    print(f"model: {model.num_params():,} parameters, {c.pieces()} | KV cache {model.kv_cache_bytes(1, context) / 1024:,.0f} KiB "
          f"per sample ({c.n_layer} layers x keys and values x {c.kv_heads} of {c.n_head} heads x {context} positions "
          f"x {c.n_embd // c.n_head} floats)", file=sys.stderr)

    generator = torch.Generator().manual_seed(args.seed)  # sampling draws on CPU, so this is device-independent
    prompt = torch.tensor([tokenizer.encode(args.prompt).tolist()], dtype=torch.long, device=device)  # (1, T)
    for i in range(args.num_samples):
        if i:
            print("\n" + "-" * 40)
        sys.stdout.write(args.prompt)
        decoder = StreamDecoder(tokenizer)  # holds back a BPE token that ends inside a multi-byte character
        for idx_next in model.generate_tokens(prompt, args.max_new_tokens, args.temperature, args.top_k, generator,
                                              args.block_size):
            sys.stdout.write(decoder.push(idx_next[0].tolist()))
            sys.stdout.flush()
        sys.stdout.write(decoder.flush() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
