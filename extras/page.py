"""The numbers behind index.html, visualize.py's interactive page: one JSON dict, put into extras/page.html.

    page_data(model, tokenizer, ids, labels, ...)   everything the page shows, as plain lists and numbers
    render_page(data)                               the self-contained page: the template with the data inside

Every number comes from the checkpoint or its run's metrics files: the parameter counts from the model, the
attention weights and the next-token logits from a forward pass over the prompt, the writer's sample from
extras/engine.py with generate.py's seed and settings. The page's JavaScript only reshapes them (temperature
and top-k, as model.next_token_candidates does) and draws them. tests/test_page.py checks the numbers,
tests/test_browser.py the page in a real browser.
"""

import json
import math
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import torch

from extras.engine import generate_tokens
from extras.inside import attention_maps
from extras.metrics import read_metrics
from model import GPT, GPTConfig, next_token_candidates

TEMPLATE = Path(__file__).with_name("page.html")
DATA_MARK = "__QUILL_DATA__"  # where the template takes the JSON; it appears there exactly once
WRITER_CANDIDATES = 10  # candidates kept per writer step: the likeliest under the page's settings
MAX_LOG_POINTS = 1000  # train_log.csv rows kept for the loss chart: enough for a smooth line, few bytes
MODERN_FIELDS = ("position", "norm", "mlp", "qk_norm", "n_kv_head", "tie_weights")  # GPTConfig's 2026 pieces


def float32s(values) -> list[float]:
    """values as the shortest decimals that read back as the same float32s: exact, in half the digits."""
    return [float(str(v)) for v in np.asarray(values, dtype=np.float32).ravel()]


def finite(x: float) -> float | None:
    """x, or None (JSON null) for a NaN: a value the run did not record."""
    return None if math.isnan(x) else x


def rounded(values, places: int = 4) -> list:
    """values (any shape) as nested lists of floats rounded to `places` decimals: small JSON for [0, 1]."""
    return np.round(np.asarray(values, dtype=np.float64), places).tolist()


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
    modern = [f"{name} {getattr(config, name)}" for name in MODERN_FIELDS if getattr(config, name) != gpt2[name]]
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
        log = [r for r in read_metrics(log_path) if not math.isnan(r["train_loss"])] if log_path.exists() else []
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
# The writer: a sample from extras/engine.py, and the distribution each of its tokens was drawn from.

@torch.no_grad()
def writer_sample(model: GPT, tokenizer, idx: torch.Tensor, max_new_tokens: int, temperature: float, top_k: int, seed: int
                  ) -> dict:
    """The tokens generate.py prints after idx (1, T) for this seed and these settings
    (engine.generate_tokens, a CPU generator seeded the same way, window "shift"), and at each step the top
    candidates with their probabilities, the chosen token's probability and rank, and the uniform number u the
    draw used."""
    logits_seen = []  # the last position's logits of each forward pass generate_tokens makes: one a token

    def record(module, args, output):
        logits_seen.append(output[0][0, -1].float().cpu())  # (V,)

    hook = model.register_forward_hook(record)
    try:
        generator = torch.Generator().manual_seed(seed)
        ids = [int(t) for t in generate_tokens(model, idx, max_new_tokens, temperature, top_k, generator)]
    finally:
        hook.remove()
    # The same generator, replayed: sample_next_token draws one torch.rand((1, 1)) a token (none if greedy).
    replay = torch.Generator().manual_seed(seed)
    steps = []
    for chosen, logits in zip(ids, logits_seen):
        probs, cand = next_token_candidates(logits[None], temperature, top_k)  # (1, k) each
        order = probs[0].argsort(descending=True, stable=True)  # k < V already is; the whole vocabulary not
        probs, cand = probs[0][order], cand[0][order]
        rank = int((cand == chosen).nonzero()[0])
        step = {"ids": cand[:WRITER_CANDIDATES].tolist(), "probs": rounded(probs[:WRITER_CANDIDATES]),
                "p": round(float(probs[rank]), 6), "rank": rank}
        if temperature > 0:
            step["u"] = round(float(torch.rand((1, 1), generator=replay)), 4)
        steps.append(step)
    return {"ids": ids, "steps": steps, "text": tokenizer.decode(ids)}


# ------------------------------------------------------------------------------------------------------------

@torch.no_grad()
def page_data(model: GPT, tokenizer, ids: list[int], labels: list[str], *, title: str, step: int,
              train_config: dict | None, metrics_path: Path | None, attention_tokens: int, temperature: float,
              top_k: int, seed: int, max_new_tokens: int) -> dict:
    """Everything index.html shows, for the prompt's token ids and the labels (visualize.token_labels)."""
    device = model.transformer.wte.weight.device
    idx = torch.tensor([ids], dtype=torch.long, device=device)  # (1, T)
    shown = idx[:, :attention_tokens]  # causal: the first tokens' weights are those in the whole prompt
    maps = attention_maps(model, shown)[:, 0].float().cpu()  # (n_layer, nh, t, t)
    logits = model(idx)[0][0, -1].float().cpu()  # (V,): the prediction after the last prompt token
    block_size = model.config.block_size
    tokens_per_step = (train_config or {}).get("batch_size", 0) * block_size
    return {
        "title": title, "step": step, "tokenizer": tokenizer.kind, "vocab_size": model.config.vocab_size,
        "labels": labels,
        "chars": tokenizer.chars if tokenizer.kind == "char" else None,  # the page encodes typed text
        "prompt": {"text": tokenizer.decode(ids), "ids": ids},
        "params": {"total": model.num_params(), "groups": parameter_groups(model),
                   **architecture(model.config, train_config)},
        "attention": rounded(maps),  # (n_layer, nh, t, t): query rows, key columns
        "loss": loss_history(metrics_path, tokens_per_step) if metrics_path is not None else None,
        "logits": float32s(logits),
        "sampling": {"temperature": temperature, "top_k": top_k, "seed": seed, "max_new_tokens": max_new_tokens},
        "writer": writer_sample(model, tokenizer, idx, max_new_tokens, temperature, top_k, seed),
    }


def render_page(data: dict) -> str:
    """The page: extras/page.html with data inside as JSON (one <script> block: it needs nothing else)."""
    template = TEMPLATE.read_text(encoding="utf-8")
    # "</" could close the <script> block early if a token's text held "</script>": JSON may write it "<\/".
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    return template.replace(DATA_MARK, payload)


def read_page_data(html: str) -> dict:
    """The data a page made by render_page holds (the tests read it back)."""
    start = html.index('<script type="application/json" class="quill-data">') + len(
        '<script type="application/json" class="quill-data">')
    return json.loads(html[start:html.index("</script>", start)])
