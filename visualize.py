"""Draw pictures of what a trained model learned: where it attends, what it would say next, how it sees its
tokens; and write one page that runs the model itself in the browser.

    python visualize.py                                  # out/best.pt, into out/pictures
    python visualize.py --prompt "JULIET: O Romeo, Romeo" --checkpoint out/last.pt --out_dir out/pictures

Writes into --out_dir:
    attention.png    every layer's and head's attention over the prompt: query tokens down, key tokens across;
                     the empty upper triangle is the causal mask (no token sees the ones after it)
    next_token.png   the next-token distribution after the prompt, raw and as temperature and top-k reshape
                     it (what generate.py --temperature / --top_k draw from), the same tokens in the same
                     order in each panel
    embeddings.png   the token embedding matrix projected onto its two main directions (PCA), each token
                     labelled
    loss.png         the run's loss curves, when the checkpoint's folder holds the run's metrics.csv
    index.html       one self-contained page that carries the model's weights and runs its forward pass in
                     plain JavaScript (extras/page.py fills in the template extras/page.html with
                     extras/page_model.js and extras/page_tokenizer.js): type any text and see its tokens,
                     attention for every layer and head, what each layer would predict, the next-token
                     distribution under temperature and top-k, and a writer that samples new text token by
                     token with a seed; beside it generate.py's own sample, the parameters and the loss. Open
                     it from disk, or in a notebook:
                     IPython.display.HTML(filename="out/pictures/index.html")

The numbers behind each picture come from small functions (attention_for, distributions, embedding_pca, and
extras/page.py's page_data) that the tests check; the draw_* functions only turn them into figures.
--temperature, --top_k, --seed and --max_new_tokens are generate.py's: the page's reference sample is what
generate.py prints with them, and its writer starts from them. --weights says how the page stores the weights.
"""
import argparse
import functools
import importlib.util
import math
import sys
from pathlib import Path

import torch

from extras.checkpoint import load_checkpoint, model_from_checkpoint, tokenizer_from_checkpoint
from extras.cli import CLIError, FlagParser, run_cli
from extras.files import write_atomically
from extras.metrics import plot_metrics, read_metrics
from extras.inside import attention_maps, next_token_probs
from extras.page import WEIGHT_FORMATS, page_data, render_page
from model import GPT
from extras.precision import pick_device

DEFAULT_PROMPT = "ROMEO:\nBut soft, what light"  # every character is in Tiny Shakespeare's vocabulary
ATTENTION_TOKENS = 48  # attention maps show at most the prompt's first 48 tokens: more and the labels overlap
TOP_TOKENS = 15  # bars per next-token panel: the most likely tokens under the raw distribution

# (panel title, temperature, top_k) for next_token.png. Top-k panels use temperature 1, so they show top-k
# alone.
SAMPLING_SETTINGS = [("raw (T=1)", 1.0, None), ("T=0.5", 0.5, None), ("T=0.8", 0.8, None),
                     ("T=1.2", 1.2, None), ("top-k 10", 1.0, 10), ("top-k 40", 1.0, 40)]

# Characters that print as nothing (or as a line break) get a visible stand-in on the axes.
VISIBLE = {" ": "␣", "\n": "⏎", "\t": "⇥"}
TOKEN_CLASSES = ["vowel", "consonant", "capital", "digit", "other"]  # embeddings.png colours, in legend order


def build_parser() -> FlagParser:
    """The command line of visualize.py."""
    parser = FlagParser(description="Draw attention maps, next-token distributions and token embeddings of a "
                                    "checkpoint, and write a page that runs the model in the browser.",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--checkpoint", default="out/best.pt", help="checkpoint written by train.py")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT,
                        help=f"text to look at; every character must be in the model's vocabulary, and it "
                             f"must fit in the model's context (attention.png shows its first "
                             f"{ATTENTION_TOKENS} tokens); the page starts from it, and you can type another "
                             "there")
    parser.add_argument("--out_dir", default="out/pictures",
                        help="folder the PNGs and index.html are written to (created if missing)")
    # The page's reference sample and where its sliders start: generate.py's flags, with generate.py's
    # defaults.
    parser.add_argument("--temperature", type=float, default=0.8,
                        help="the page's sampling temperature (0 is greedy)")
    parser.add_argument("--top_k", type=int, default=40,
                        help="the page's top-k (clamped to the vocabulary size)")
    parser.add_argument("--seed", type=int, default=1337,
                        help="seed of the page's sample, as generate.py --seed")
    parser.add_argument("--max_new_tokens", type=int, default=200,
                        help="tokens the page's sample writes after the prompt")
    parser.add_argument("--weights", default="auto", choices=WEIGHT_FORMATS,
                        help="how index.html stores the weights: float32 (exact), float16 (half the size), "
                             "int8 (a quarter: 8-bit integers, one float32 scale per row); auto: float32 up "
                             "to 1M parameters, float16 above")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                        help="auto picks cuda, then mps, then cpu")
    return parser


def main(argv=None) -> int:
    """Command-line entry point: check everything, then compute the numbers, then write the pictures."""
    return run_cli(lambda: visualize(build_parser().parse_args(argv)))


# ------------------------------------------------------------------------------------------------------------
# Token text: what each token id is called on the axes.

def visible(text: str) -> str:
    """text with spaces, newlines and other invisible characters replaced by visible stand-ins."""
    return "".join(VISIBLE.get(ch) or (ch if ch.isprintable() else ascii(ch)[1:-1]) for ch in text)


def token_labels(tokenizer) -> list[str]:
    """A short visible label for every token id: its text, or its bytes in hex where they are not whole
    characters.

    A BPE token may hold part of a multi-byte character (the first two of an emoji's four bytes): decoding it
    alone gives nothing sensible, so it is shown as its bytes, e.g. "<f0 9f>".
    """
    if tokenizer.kind == "char":
        return [visible(ch) for ch in tokenizer.chars]
    labels = []
    for b in tokenizer.token_bytes():
        try:
            labels.append(visible(b.decode("utf-8")))
        except UnicodeDecodeError:
            labels.append(f"<{b.hex(' ')}>")
    return labels


@functools.cache
def _font_code_points() -> frozenset[int]:
    """The characters matplotlib's default font can draw."""
    from matplotlib import font_manager, ft2font

    return frozenset(ft2font.FT2Font(font_manager.findfont(font_manager.FontProperties())).get_charmap())


def drawable(label: str) -> str:
    """label with characters the font lacks (CJK, emoji in the default font) written as U+XXXX, not as empty
    boxes."""
    return "".join(ch if ord(ch) in _font_code_points() else f"U+{ord(ch):04X}" for ch in label)


def token_class(label: str) -> str:
    """vowel, consonant, capital, digit or other, from the label's first character after a leading space
    (␣the: consonant), so BPE word pieces group by how the word starts."""
    text = label.removeprefix(VISIBLE[" "])
    first = text[:1]
    if not first or label.startswith("<"):  # a label that is bytes in hex (partial characters)
        return "other"
    if first.isupper():
        return "capital"
    if first.isdigit():
        return "digit"
    if first.isalpha():
        return "vowel" if first.lower() in "aeiou" else "consonant"
    return "other"


# ------------------------------------------------------------------------------------------------------------
# The numbers behind each picture.

def attention_for(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    """The attention weights over the tokens idx (1, T): (n_layer, n_head, T, T), query rows, key columns, on
    the CPU."""
    return attention_maps(model, idx)[:, 0].float().cpu()  # (n_layer, B=1, nh, T, T) -> (n_layer, nh, T, T)


def attention_by_distance(maps: torch.Tensor, farthest: int = 3) -> torch.Tensor:
    """How far back each head looks: the mean weight a query gives the token d positions before it, for d = 0
    (itself) to farthest, over the queries that have such a token: (n_layer, n_head, farthest + 1)."""
    T = maps.size(-1)
    return torch.stack([maps.diagonal(offset=-d, dim1=-2, dim2=-1).mean(-1)
                        for d in range(min(farthest, T - 1) + 1)], dim=-1)


@torch.no_grad()
def distributions(model: GPT, idx: torch.Tensor, settings) -> torch.Tensor:
    """The next-token distribution after idx (1, T) under each (title, temperature, top_k) of settings:
    (len(settings), V).

    Each row is what sampling would draw from (extras/inside.py: next_token_probs): zero outside the top-k
    candidates.
    """
    logits = model(idx)[0][:, -1]  # (1, V): the prediction after the last prompt token
    return torch.cat([next_token_probs(logits, temperature, top_k)
                      for _, temperature, top_k in settings]).cpu()


@torch.no_grad()
def embedding_pca(model: GPT) -> tuple[torch.Tensor, torch.Tensor]:
    """The token embeddings (V, C) projected onto their two principal directions: points (V, 2), and the share
    of the variance each direction explains (2,)."""
    w = model.transformer.wte.weight.float().cpu()  # (V, C): row i is token i's vector
    centred = w - w.mean(dim=0)  # PCA looks at how tokens differ, not at what they share
    # s (min(V, C),), descending; vh (min(V, C), C)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    points = centred @ vh[:2].T  # (V, 2): coordinates along the two directions of largest variance
    explained = s[:2].square() / s.square().sum()  # (2,): the variance along each direction over the total
    return points, explained


# ------------------------------------------------------------------------------------------------------------
# The pictures. Figure objects render straight to PNG, without a GUI backend.

def save(fig, path: Path) -> None:
    """Write fig to path as a PNG, atomically (a crash leaves the old picture or the new one, never half)."""
    write_atomically(path, lambda f: fig.savefig(f, format="png", dpi=100))


def draw_attention(maps: torch.Tensor, labels: list[str], path: Path, title: str) -> None:
    """attention.png: a grid of heat maps, one row per layer and one column per head, token labels on the
    edges."""
    from matplotlib.colors import PowerNorm
    from matplotlib.figure import Figure

    n_layer, n_head, T, _ = maps.shape
    side = max(2.2, 0.11 * T)  # inches per map: room for T labels on the outer edges
    fig = Figure(figsize=(side * n_head + 1.5, side * n_layer + 1.2), layout="constrained")
    axes = fig.subplots(n_layer, n_head, squeeze=False, sharex=True, sharey=True)
    ticks, tick_labels = range(T), [drawable(label) for label in labels]
    # BPE pieces side by side would overlap: stand them on end
    rotation = 90 if max(len(label) for label in tick_labels) > 1 else 0
    # Square-root colour scale: a query attending evenly over 30 keys gives each 0.03, invisible on a linear
    # scale.
    norm = PowerNorm(gamma=0.5, vmin=0.0, vmax=1.0)
    for layer in range(n_layer):
        for head in range(n_head):
            ax = axes[layer, head]
            image = ax.imshow(maps[layer, head].numpy(), cmap="Blues", norm=norm, interpolation="nearest")
            ax.set_xticks(ticks, tick_labels, fontsize=7, rotation=rotation)
            ax.set_yticks(ticks, tick_labels, fontsize=7)
            ax.tick_params(length=0, labelbottom=layer == n_layer - 1, labelleft=head == 0)
            if layer == 0:
                ax.set_title(f"head {head}")
            if head == 0:
                ax.set_ylabel(f"layer {layer}\nquery (reading)")
            if layer == n_layer - 1:
                ax.set_xlabel("key (attended to)")
    fig.colorbar(image, ax=axes, shrink=0.6, label="attention weight (each row sums to 1)")
    fig.suptitle(title)
    save(fig, path)


def draw_next_token(probs: torch.Tensor, settings, labels: list[str], path: Path, title: str) -> None:
    """next_token.png: one bar chart per setting, each over the TOP_TOKENS tokens most likely under the raw
    distribution (row 0), in that order, so the panels show how each setting reshapes the same
    distribution."""
    from matplotlib.figure import Figure

    top = probs[0].argsort(descending=True)[:TOP_TOKENS]  # (n,) token ids, most likely first
    names = [drawable(labels[i]) for i in top.tolist()]
    rotation = 90 if max(len(n) for n in names) > 1 else 0  # BPE pieces are words: stand them on end
    cols = 3
    rows = math.ceil(len(settings) / cols)
    fig = Figure(figsize=(5 * cols, 3.6 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True).ravel()
    for ax, (name, _, _), p in zip(axes, settings, probs):
        shown = p[top]  # (n,)
        ax.bar(range(len(top)), shown.numpy(), color="C0")
        ax.set_xticks(range(len(top)), names, rotation=rotation, fontsize=9)
        ax.set_title(f"{name}: top token {shown[0]:.1%}, these {len(top)} hold {shown.sum():.1%}",
                     fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[len(settings):]:
        ax.set_visible(False)
    for ax in axes[::cols]:
        ax.set_ylabel("probability")
    fig.suptitle(title)
    save(fig, path)


def draw_embeddings(points: torch.Tensor, explained: torch.Tensor, labels: list[str], path: Path,
                    title: str) -> None:
    """embeddings.png: every token as a point on the embeddings' two main directions, labelled, coloured by
    class."""
    from matplotlib.figure import Figure

    V = len(labels)
    side = min(16.0, max(8.0, 6 + V / 100))  # larger vocabularies get a larger canvas and smaller labels
    fontsize = 9 if V <= 100 else 6 if V <= 400 else 4
    fig = Figure(figsize=(side, side), layout="constrained")
    ax = fig.add_subplot()
    classes = [token_class(label) for label in labels]
    for colour, cls in enumerate(TOKEN_CLASSES):
        members = [i for i, c in enumerate(classes) if c == cls]
        if members:
            ax.scatter(points[members, 0].numpy(), points[members, 1].numpy(), s=12, color=f"C{colour}",
                       label=f"{cls} ({len(members)})")
            for i in members:
                ax.annotate(drawable(labels[i]), points[i].tolist(), xytext=(3, 3),
                            textcoords="offset points", fontsize=fontsize, color=f"C{colour}")
    ax.set_xlabel(f"principal direction 1 ({explained[0]:.1%} of the variance)")
    ax.set_ylabel(f"principal direction 2 ({explained[1]:.1%} of the variance)")
    ax.grid(alpha=0.3)
    ax.legend(title="token starts with", loc="best")
    ax.set_title(title)
    save(fig, path)


# ------------------------------------------------------------------------------------------------------------

def visualize(args: argparse.Namespace) -> int:
    """Check the checkpoint, prompt and folder, compute every picture's numbers, then write the PNGs."""
    checkpoint_path, out_dir = Path(args.checkpoint), Path(args.out_dir)
    if importlib.util.find_spec("matplotlib") is None:
        raise CLIError("visualize.py draws with matplotlib, which is not installed: pip install matplotlib")
    # Everything a user can get wrong is checked before the first file is written, so a mistake leaves
    # nothing behind.
    checkpoint = load_checkpoint(checkpoint_path)
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
        raise CLIError("--prompt must not be empty: the pictures need at least one token to look at")
    ids = tokenizer.encode(args.prompt).tolist()
    block_size = checkpoint["model_config"]["block_size"]
    if len(ids) > block_size:
        raise CLIError(f"the prompt is {len(ids)} tokens but this model sees at most {block_size} (its "
                       "block_size); shorten --prompt")
    if args.temperature < 0 or args.top_k < 1 or args.max_new_tokens < 0:
        raise CLIError(f"--temperature must be >= 0, --top_k >= 1 and --max_new_tokens >= 0; got "
                       f"{args.temperature}, {args.top_k} and {args.max_new_tokens}")
    if out_dir.exists() and not out_dir.is_dir():
        raise CLIError(f"--out_dir {out_dir} is a file, not a folder; pass a folder")
    metrics_path = checkpoint_path.parent / "metrics.csv"
    train_config = checkpoint.get("train_config")
    try:  # loss.png is a bonus: a run folder without a readable metrics.csv just does not get one
        has_metrics = train_config is not None and len(read_metrics(metrics_path)) > 0
    except (OSError, ValueError, KeyError):
        has_metrics = False

    model = model_from_checkpoint(checkpoint, device)
    labels = token_labels(tokenizer)
    idx = torch.tensor([ids], dtype=torch.long, device=device)  # (1, T)
    shown = idx[:, :ATTENTION_TOKENS]  # the first tokens: their weights are those in the whole prompt
    maps = attention_for(model, shown)  # (n_layer, nh, t, t)
    probs = distributions(model, idx, SAMPLING_SETTINGS)  # (settings, V)
    points, explained = embedding_pca(model)  # (V, 2), (2,)
    model.float()  # train.py saves float32 weights; the page's sample is generate.py --dtype float32's
    data, weights = page_data(
        model, tokenizer, ids, labels, title=f"{checkpoint_path.parent.name}/{checkpoint_path.name}",
        step=checkpoint["step"], train_config=train_config,
        metrics_path=metrics_path if has_metrics else None, temperature=args.temperature, top_k=args.top_k,
        seed=args.seed, max_new_tokens=args.max_new_tokens, weights=args.weights)
    page = render_page(data, weights)

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CLIError(f"cannot create --out_dir {out_dir} ({e.strerror}); pass a folder you can write to"
                       ) from None
    c, prompt_end = model.config, ("…" if len(args.prompt) > 24 else "") + visible(args.prompt[-24:])
    prompt_labels = [labels[i] for i in ids[:ATTENTION_TOKENS]]
    part = (f"the first {len(prompt_labels)} of the prompt's {len(ids)} tokens" if len(ids) > ATTENTION_TOKENS
            else f"the prompt's {len(ids)} tokens")
    draw_attention(maps, prompt_labels, out_dir / "attention.png",
                   f"Attention weights over {part}: {c.n_layer} layers x {c.n_head} heads "
                   f"({checkpoint_path.name}, step {checkpoint['step']})")
    print(f"wrote {out_dir / 'attention.png'}: {c.n_layer} layers x {c.n_head} heads over {part}")
    by_distance = attention_by_distance(maps)  # (n_layer, nh, up to 4): the token itself, 1, 2, 3 back
    back = by_distance.size(-1)  # how many distances were measured
    distances = ", ".join(["the token itself", *map(str, range(1, back))][:back])
    for layer, heads in enumerate(by_distance):
        for head, weights in enumerate(heads):
            # The key with the most weight, averaged over the queries after the first (which can only read
            # itself).
            most_read = int(maps[layer, head, min(1, maps.size(-1) - 1):].mean(0).argmax())
            print(f"  layer {layer} head {head}: mean weight on {distances}"
                  + (" back" if back > 1 else "") + ": "
                  + ", ".join(f"{w:.0%}" for w in weights.tolist())
                  + f"; most read: {visible(prompt_labels[most_read])!r}")
    draw_next_token(probs, SAMPLING_SETTINGS, labels, out_dir / "next_token.png",
                    f"Next token after \"{prompt_end}\": raw, then reshaped by temperature and top-k")
    print(f"wrote {out_dir / 'next_token.png'}: the {min(TOP_TOKENS, c.vocab_size)} likeliest next tokens "
          f"under {len(SAMPLING_SETTINGS)} sampling settings")
    draw_embeddings(points, explained, labels, out_dir / "embeddings.png",
                    f"Token embeddings ({c.vocab_size} tokens x {c.n_embd} dimensions) on their two main "
                    "directions")
    print(f"wrote {out_dir / 'embeddings.png'}: {c.vocab_size} token embeddings by PCA "
          f"({explained.sum():.0%} of the variance shown)")
    if has_metrics:
        plot_metrics(metrics_path, out_dir / "loss.png", train_config["batch_size"] * block_size)
        print(f"wrote {out_dir / 'loss.png'}: the run's losses from {metrics_path}")
    write_atomically(out_dir / "index.html", lambda f: f.write(page.encode("utf-8")))
    size = len(page.encode("utf-8"))
    print(f"wrote {out_dir / 'index.html'}: the page that runs the model ({size / 2**20:,.1f} MiB, weights "
          f"as {data['weights']['format']}; self-contained: open it in a browser)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
