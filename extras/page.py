"""What index.html, visualize.py's interactive page, carries: the model's weights, its tokenizer and the
run's numbers, put into the template extras/page.html together with two short JavaScript files.

    page_data(model, tokenizer, ids, labels, ...)   the page's numbers, as plain lists, and its weights' bytes
    render_page(data, weights)                      the self-contained page: the template, all of it inside
    stored_weights(model, format)                   the weights as the page holds them, back in PyTorch

The page runs the model itself: extras/page_model.js is model.py's forward pass in plain JavaScript, and
extras/page_tokenizer.js the checkpoint's tokenizer, so every figure follows the text the learner types. From
Python come only what JavaScript cannot compute: the parameter groups' names, the run's losses, and
generate.py's own sample (extras/engine.py, the reference the page's writer is compared with).
tests/test_page.py checks the data, tests/test_browser.py the page in a real browser against PyTorch.
"""

import base64
import copy
import json
import math
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import torch

from extras.engine import generate_tokens
from extras.metrics import read_metrics
from model import GPT, GPTConfig

TEMPLATE = Path(__file__).with_name("page.html")
SCRIPTS = {"/*__QUILL_TOKENIZER_JS__*/": Path(__file__).with_name("page_tokenizer.js"),
           "/*__QUILL_MODEL_JS__*/": Path(__file__).with_name("page_model.js")}
DATA_MARK = "__QUILL_DATA__"  # where the template takes the JSON; it appears there exactly once
WEIGHTS_MARK = "__QUILL_WEIGHTS__"  # where it takes the weights, as base64
MAX_LOG_POINTS = 1000  # train_log.csv rows kept for the loss chart: enough for a smooth line, few bytes
MODERN_FIELDS = ("position", "norm", "mlp", "qk_norm", "n_kv_head", "tie_weights")  # GPTConfig's 2026 pieces
WEIGHT_FORMATS = ("auto", "float32", "float16", "int8")
AUTO_FLOAT32_PARAMS = 1_000_000  # auto: float32 up to here (a page of about 6 MB), float16 above


def float32s(values) -> list[float]:
    """values as the shortest decimals that read back as the same float32s: exact, in half the digits."""
    return [float(str(v)) for v in np.asarray(values, dtype=np.float32).ravel()]


def finite(x: float) -> float | None:
    """x, or None (JSON null) for a NaN: a value the run did not record."""
    return None if math.isnan(x) else x


# ------------------------------------------------------------------------------------------------------------
# The weights, as the page stores them. A matrix (every 2-D tensor: embeddings, Linear weights) as float32,
# float16, or 8-bit integers with one float32 scale per row; vectors (biases, norm gains) always as float32:
# they are few. A tied embedding/head matrix is stored once.

def weight_format(model: GPT, requested: str) -> str:
    """The format the page stores the weights in: requested, or for "auto" float32 for a small model and
    float16 for a large one (half the bytes, each weight rounded to 11 significant bits)."""
    if requested != "auto":
        return requested
    return "float32" if model.num_params() <= AUTO_FLOAT32_PARAMS else "float16"


def quantize_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """8-bit integers q (rows, cols) and a float32 scale per row (rows,) with q * scale about w: each row's
    largest |w| becomes 127."""
    scales = w.abs().amax(dim=1) / 127  # (rows,)
    scales = torch.where(scales > 0, scales, torch.ones_like(scales))  # a row of zeros: any scale will do
    return torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8), scales


def stored_weights(model: GPT, fmt: str) -> dict[str, torch.Tensor]:
    """Each parameter as the page holds it, read back as float32 on the CPU: what its JavaScript computes
    with (tests run PyTorch on these to compare)."""
    out = {}
    for name, p in model.named_parameters():  # a tied matrix once, under transformer.wte.weight
        w = p.detach().float().cpu()
        if w.dim() == 2 and fmt == "float16":
            w = w.half().float()
        elif w.dim() == 2 and fmt == "int8":
            q, scales = quantize_rows(w)
            w = q.float() * scales[:, None]
        out[name] = w
    return out


def model_with_stored_weights(model: GPT, fmt: str) -> GPT:
    """A float32 CPU copy of model whose weights are the page's (rounded to fmt)."""
    stored, twin = stored_weights(model, fmt), copy.deepcopy(model).float().cpu().eval()
    with torch.no_grad():
        for name, p in twin.named_parameters():
            p.copy_(stored[name])
    return twin


def pack_weights(model: GPT, fmt: str) -> tuple[list[dict], bytes]:
    """The page's weight bytes and their index: name, shape, dtype and byte offset of each tensor (and of
    an int8 matrix's scales). Little-endian, every tensor at a multiple of 4 bytes, as JavaScript's typed
    arrays read them."""
    chunks, index, offset = [], [], 0

    def add(array: np.ndarray) -> int:
        nonlocal offset
        data = array.tobytes()
        data += bytes(-len(data) % 4)
        chunks.append(data)
        offset += len(data)
        return offset - len(data)

    for name, p in model.named_parameters():
        w = p.detach().float().cpu()
        entry = {"name": name, "shape": list(w.shape)}
        if w.dim() < 2 or fmt == "float32":
            entry.update(dtype="float32", offset=add(w.numpy().astype("<f4")))
        elif fmt == "float16":
            entry.update(dtype="float16", offset=add(w.numpy().astype("<f2")))
        else:
            q, scales = quantize_rows(w)
            entry.update(dtype="int8", offset=add(q.numpy()), scales=add(scales.numpy().astype("<f4")))
        index.append(entry)
    return index, b"".join(chunks)


def tokenizer_data(tokenizer) -> dict:
    """What extras/page_tokenizer.js needs: the characters, or BPE's tokens (as the library's stand-in
    strings, by id) and its merges as pairs of ids, in the order they were learned."""
    if tokenizer.kind == "char":
        return {"kind": "char", "chars": tokenizer.chars}
    model = json.loads(tokenizer.to_string())["model"]
    vocab = [""] * len(model["vocab"])
    for symbols, i in model["vocab"].items():
        vocab[i] = symbols
    # Older versions of the library write each merge as one string "a b", newer ones as a pair.
    pairs = [m.split(" ") if isinstance(m, str) else m for m in model["merges"]]
    merges = [[model["vocab"][a], model["vocab"][b]] for a, b in pairs]
    return {"kind": "bpe", "vocab": vocab, "merges": merges}


# ------------------------------------------------------------------------------------------------------------
# Where the parameters live.

def parameter_group(name: str) -> tuple[str, str]:
    """(group, kind) of a parameter: "transformer.h.1.mlp.c_fc.bias" -> ("block 1 MLP", "mlp")."""
    parts = name.split(".")
    if parts[0] == "lm_head":
        return "output head", "head"
    if parts[1] != "h":
        return {"wte": ("token embedding", "embedding"), "wpe": ("position embedding", "embedding"),
                "ln_f": ("final norm", "norm")}[parts[1]]
    layer, part = parts[2], parts[3]  # transformer.h.<layer>.<part>.<...>
    if part == "attn":
        return f"block {layer} attention", "attention"
    if part == "mlp":
        return f"block {layer} MLP", "mlp"
    return f"block {layer} norms", "norm"  # ln_1 and ln_2


def parameter_groups(model: GPT) -> list[dict]:
    """The model's parameters by group, in the order forward() uses them: name, kind, count, and each tensor's
    name and shape. A tied embedding/head matrix is one tensor (named_parameters() yields it once), so the
    counts add up to num_params()."""
    groups: dict[str, dict] = {}
    for name, p in model.named_parameters():
        group, kind = parameter_group(name)
        entry = groups.setdefault(group, {"name": group, "kind": kind, "count": 0, "tensors": []})
        entry["count"] += p.numel()
        entry["tensors"].append([name, list(p.shape)])
    if model.config.tie_weights:
        groups["token embedding"]["name"] = "token embedding (= head)"
    # named_parameters() lists wte first (it is registered first); the head reads the final norm's output, so
    # it goes last.
    return sorted(groups.values(), key=lambda g: g["kind"] == "head")


def architecture(config: GPTConfig, train_config: dict | None) -> dict:
    """The model's shape and pieces, and whether they are GPT-2's or include 2026 ones (extras/modern.py)."""
    gpt2 = {f.name: f.default for f in fields(GPTConfig)}  # every field's default is GPT-2's
    modern = [f"{name} {getattr(config, name)}" for name in MODERN_FIELDS
              if getattr(config, name) != gpt2[name]]
    train_config = train_config or {}
    return {"config": asdict(config), "pieces": config.pieces(),
            "family": "GPT-2" if not modern else "with 2026 pieces: " + ", ".join(modern),
            "recipe": train_config.get("recipe"), "optimizer": train_config.get("optimizer")}


# ------------------------------------------------------------------------------------------------------------
# The loss: metrics.csv (every evaluation) and train_log.csv (every step) beside the checkpoint.

def loss_history(metrics_path: Path, tokens_per_step: int) -> dict | None:
    """The run's evaluations, its logged training loss and learning rate, the best val loss and where val
    turns upward (the first evaluation after the best that is worse than it); None when there is no readable
    metrics.csv."""
    try:
        evals = read_metrics(metrics_path)
    except (OSError, ValueError, KeyError):
        return None
    evals = [r for r in evals if not math.isnan(r["val_loss"])]
    if not evals:
        return None
    log_path = metrics_path.with_name("train_log.csv")
    try:
        rows = read_metrics(log_path) if log_path.exists() else []
        log = [r for r in rows if not math.isnan(r["train_loss"])]
    except (OSError, ValueError, KeyError):
        log = []
    log = log[::math.ceil(len(log) / MAX_LOG_POINTS) or 1]  # every n-th row of a long run
    best = min(evals, key=lambda r: r["val_loss"])
    after = [r for r in evals if r["step"] > best["step"] and r["val_loss"] > best["val_loss"]]
    point = lambda r: {"step": int(r["step"]), **{k: finite(r[k]) for k in ("train_loss", "val_loss", "lr")}}
    return {"evals": [point(r) for r in evals],
            "log": [[int(r["step"]), finite(r["lr"]), r["train_loss"]] for r in log],  # (step, lr, loss)
            "tokens_per_step": tokens_per_step, "best": point(best),
            "turns_up": point(after[0]) if after else None, "last": point(evals[-1])}


# ------------------------------------------------------------------------------------------------------------
# generate.py's own sample: the reference the page's live writer is compared with.

@torch.no_grad()
def writer_sample(model: GPT, tokenizer, idx: torch.Tensor, max_new_tokens: int, temperature: float,
                  top_k: int, seed: int) -> dict:
    """The tokens generate.py prints after idx (1, T) for this seed and these settings
    (engine.generate_tokens, a CPU generator seeded the same way, window "shift"): their ids and text."""
    generator = torch.Generator().manual_seed(seed)
    ids = [int(t) for t in generate_tokens(model, idx, max_new_tokens, temperature, top_k, generator)]
    return {"ids": ids, "text": tokenizer.decode(ids)}


# ------------------------------------------------------------------------------------------------------------

@torch.no_grad()
def page_data(model: GPT, tokenizer, ids: list[int], labels: list[str], *, title: str, step: int,
              train_config: dict | None, metrics_path: Path | None, temperature: float, top_k: int, seed: int,
              max_new_tokens: int, weights: str = "auto") -> tuple[dict, bytes]:
    """The page's data for the prompt's token ids and the labels (visualize.token_labels), and its weights'
    bytes. weights: one of WEIGHT_FORMATS."""
    fmt = weight_format(model, weights)
    index, blob = pack_weights(model, fmt)
    device = model.transformer.wte.weight.device
    idx = torch.tensor([ids], dtype=torch.long, device=device)  # (1, T)
    # What PyTorch makes of the prompt with the page's own weights: the page compares its forward pass.
    reference = model_with_stored_weights(model, fmt)(idx.cpu())[0][0, -1]  # (V,)
    tokens_per_step = (train_config or {}).get("batch_size", 0) * model.config.block_size
    data = {
        "title": title, "step": step, "vocab_size": model.config.vocab_size, "labels": labels,
        "tokenizer": tokenizer_data(tokenizer),
        "prompt": {"text": tokenizer.decode(ids), "ids": ids},
        "params": {"total": model.num_params(), "groups": parameter_groups(model),
                   **architecture(model.config, train_config)},
        "weights": {"format": fmt, "bytes": len(blob), "tensors": index},
        "reference": {"ids": ids, "logits": float32s(reference)},
        "loss": loss_history(metrics_path, tokens_per_step) if metrics_path is not None else None,
        "sampling": {"temperature": temperature, "top_k": top_k, "seed": seed,
                     "max_new_tokens": max_new_tokens},
        "writer": writer_sample(model, tokenizer, idx, max_new_tokens, temperature, top_k, seed),
    }
    return data, blob


def render_page(data: dict, weights: bytes = b"") -> str:
    """The page: extras/page.html with the two JavaScript files, the weights (base64) and data (JSON)
    inside. It needs nothing else."""
    page = TEMPLATE.read_text(encoding="utf-8")
    for mark, path in SCRIPTS.items():
        script = path.read_text(encoding="utf-8")
        assert "</script" not in script.lower(), f"{path.name} must not close the page's <script> block"
        page = page.replace(mark, script)
    page = page.replace(WEIGHTS_MARK, base64.b64encode(weights).decode("ascii"))
    # "</" could close the <script> block early if a token's text held "</script>": JSON may write it "<\/".
    # The data goes in last, so nothing in it is ever taken for a mark.
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    payload = payload.replace("</", "<\\/")
    return page.replace(DATA_MARK, payload)


def read_page_data(html: str) -> dict:
    """The data a page made by render_page holds (the tests read it back)."""
    start = html.index('<script type="application/json" class="quill-data">') + len(
        '<script type="application/json" class="quill-data">')
    return json.loads(html[start:html.index("</script>", start)])


def read_page_weights(html: str) -> bytes:
    """The weight bytes a page made by render_page holds."""
    start = html.index('<script type="application/octet-stream" class="quill-weights">') + len(
        '<script type="application/octet-stream" class="quill-weights">')
    return base64.b64decode(html[start:html.index("</script>", start)])
