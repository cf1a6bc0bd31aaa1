"""Sample text from a trained checkpoint, printing the text as it is generated.

    python generate.py --temperature 0.8 --top_k 40
    python generate.py --prompt "ROMEO:" --max_new_tokens 300 --num_samples 3

Everything needed (architecture, weights, tokenizer: a character vocabulary or a BPE) is inside the
checkpoint. --num_samples N draws all N samples at once, as one batch (one forward pass per token for all of
them): the first streams as it is drawn, the others print when the batch is done.
"""

import argparse
import sys
from pathlib import Path

import torch

from extras.checkpoint import load_checkpoint, model_from_checkpoint, tokenizer_from_checkpoint
from extras.cli import CLIError, FlagParser, run_cli
from extras.engine import WINDOWS, generate_tokens, kv_cache_bytes, pick_weights_dtype
from extras.device import DTYPES, pick_device
from extras.streaming import StreamDecoder


def build_parser() -> FlagParser:
    """The command line of generate.py."""
    parser = FlagParser(description="Sample text from a trained checkpoint.",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = parser.add_argument
    add("--checkpoint", default="out/best.pt", help="checkpoint written by train.py")
    add("--prompt", default="\n", help="text the samples continue; every character must be in the vocabulary")
    add("--max_new_tokens", type=int, default=500, help="tokens per sample (characters, for a char model)")
    add("--temperature", type=float, default=0.8, help="0 is greedy; below 1 is safer, above 1 is wilder")
    add("--top_k", type=int, default=40, help="sample among the k most likely tokens only (clamped to V)")
    add("--block_size", type=int, default=None,
        help="context the model sees while sampling (default: the checkpoint's; cannot exceed it)")
    add("--window", default="shift", choices=WINDOWS,
        help="once the text outgrows the context: shift keeps the last half of the window and goes on cached "
             "(fast); slide sees exactly the last block_size tokens, recomputed at every step")
    add("--num_samples", type=int, default=1, help="how many samples, drawn together as one batch")
    add("--seed", type=int, default=1337, help="random seed: the same seed gives the same text")
    add("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
        help="auto picks cuda, then mps, then cpu")
    add("--dtype", default="auto", choices=["auto", *DTYPES],
        help="dtype of the weights while sampling (auto: bfloat16 on GPUs that have it, and on CPUs that "
             "have it in hardware for models of 1M parameters or more; else float32)")
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
    """Print args.num_samples samples from args.checkpoint; the first token by token as it is drawn."""
    checkpoint = load_checkpoint(Path(args.checkpoint))
    device, _ = pick_device(args.device)
    try:
        tokenizer = tokenizer_from_checkpoint(checkpoint)
    except ValueError as e:
        raise CLIError(f"{args.checkpoint} holds a tokenizer this version cannot read ({e})") from None
    if not args.prompt:
        raise CLIError("--prompt must not be empty (the default is a newline)")
    unknown = tokenizer.unknown(args.prompt)  # none for BPE: it encodes any text
    if unknown:
        raise CLIError("the prompt has characters the model never saw: " + " ".join(repr(c) for c in unknown)
                       + "; remove them or train on text that contains them")
    trained_block = checkpoint["model_config"]["block_size"]
    if args.block_size is not None and not 1 <= args.block_size <= trained_block:
        raise CLIError(f"--block_size must be between 1 and {trained_block}, the context this model was "
                       f"trained with; got {args.block_size}")
    context = args.block_size or trained_block
    prompt_ids = tokenizer.encode(args.prompt).tolist()
    if len(prompt_ids) > context:
        raise CLIError(f"the prompt is {len(prompt_ids)} tokens, longer than the model's context of "
                       f"{context}: it would never see the start of it; shorten the prompt to its last "
                       f"{context} tokens or fewer")
    model = model_from_checkpoint(checkpoint, device)
    dtype, dtype_why = pick_weights_dtype(device, args.dtype, model.num_params())
    model.to(dtype)
    # On stderr, so stdout holds only the text. Keys and values are kept for n_kv_head heads only:
    # grouped-query attention shrinks the cache by n_head / n_kv_head.
    c, N = model.config, args.num_samples
    weights, cache_kib = str(dtype).removeprefix("torch."), kv_cache_bytes(c, N, context) / 1024
    print(f"model: {model.num_params():,} parameters, {c.pieces()} | weights {weights} ({dtype_why}) | "
          f"KV cache {cache_kib:,.0f} KiB for {N} sample{'s' * (N > 1)} "
          f"({c.n_layer} layers x keys and values x {c.kv_heads} of {c.n_head} heads x {context} positions "
          f"x {c.n_embd // c.n_head} floats)", file=sys.stderr)

    # sampling draws on CPU, so this is device-independent
    generator = torch.Generator().manual_seed(args.seed)
    prompt = torch.tensor([prompt_ids] * N, dtype=torch.long, device=device)  # (N, T): one row per sample
    # each holds back a BPE token ending mid-character
    decoders = [StreamDecoder(tokenizer) for _ in range(N)]
    later = [[] for _ in range(N)]  # the text of samples 2..N, printed once the batch is done
    sys.stdout.write(args.prompt)
    steps = generate_tokens(model, prompt, args.max_new_tokens, args.temperature, args.top_k, generator,
                            args.block_size, window=args.window)  # extras/engine.py: model.generate, cached
    for idx_next in steps:
        ids = idx_next[:, 0].tolist()  # (N,): one new token per sample
        sys.stdout.write(decoders[0].push([ids[0]]))
        sys.stdout.flush()
        for i in range(1, N):
            later[i].append(decoders[i].push([ids[i]]))
    sys.stdout.write(decoders[0].flush() + "\n")
    for i in range(1, N):
        print("\n" + "-" * 40)
        sys.stdout.write(args.prompt + "".join(later[i]) + decoders[i].flush() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
