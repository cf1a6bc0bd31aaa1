"""index.html, visualize.py's page (extras/page.py): the weights it stores are the model's (float32 exactly,
float16 and int8 as stored_weights says), its reference sample is generate.py's, it fetches nothing, and it
stays within its size targets. tests/test_browser.py runs it in a browser against PyTorch.

The runs here are built directly, not trained: a GPT with its weights drawn at random and spread out (so the
norms, biases and attention are far from their initial values), saved as train.py saves one, with a made-up
metrics.csv beside it. Session-scoped, so tests/test_browser.py reuses them.
"""

import re
from dataclasses import asdict

import numpy as np
import pytest
import torch

import generate
import visualize
from conftest import require
from extras.checkpoint import load_checkpoint, model_from_checkpoint
from extras.engine import generate_tokens
from extras.page import (DATA_MARK, MAX_LOG_POINTS, SCRIPTS, TEMPLATE, WEIGHTS_MARK, loss_history,
                         model_with_stored_weights, page_data, read_page_data, read_page_weights, render_page,
                         stored_weights)
from extras.checkpoint import tokenizer_from_checkpoint
from extras.tokenizer import CharTokenizer, tokenizer_to_dict
from model import GPT, PRESETS, GPTConfig

TEXT = "\n".join(["To be, or not to be: that is the question.", "All the world's a stage,",
                  "And all the men and women merely players;",
                  "Now is the winter of our discontent!"] * 100) + "\n"
MULTIBYTE = "Ωμέγα café naïve 日本語 😀👍🏽\n"  # 2-, 3- and 4-byte characters, an emoji with a skin tone
PROMPT = "To be, or not"
SAMPLING = ["--temperature", "0.9", "--top_k", "12", "--seed", "7", "--max_new_tokens", "40"]  # not defaults
SHAKESPEARE_CHARS = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # its 65
# A run's evaluations (step, train loss, val loss): val is best at step 10, then turns upward.
EVALS = [(0, 4.2, 4.2), (5, 3.1, 3.2), (10, 2.5, 2.6), (15, 2.2, 2.7), (20, 2.0, 2.8)]
METRICS_HEADER = "step,train_loss,val_loss,val_bpc,lr,tokens_per_s,elapsed_s\n"


def spread_model(config: GPTConfig, seed: int) -> GPT:
    """A GPT with config whose weights are random at the scale of a trained model's: matrices of unit gain
    (std 1.5 / sqrt(fan_in)), norm gains around 1 and biases around 0, each different."""
    torch.manual_seed(seed)
    model = GPT(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(0.3 * torch.randn_like(p))
            else:
                p.normal_(0.0, 1.5 / p.size(1) ** 0.5)
    return model


def save_run(folder, config: GPTConfig, tok, seed: int = 0, train_config: dict | None = None, evals=()):
    """Save spread_model(config) with tok as train.py saves best.pt in folder, and with evals a metrics.csv
    and a train_log.csv (a loss every 2nd step) beside it. Returns the checkpoint's path."""
    folder.mkdir(parents=True, exist_ok=True)
    model = spread_model(config, seed)
    checkpoint = {"model": model.state_dict(), "model_config": asdict(config), "step": 20,
                  "tokenizer": tokenizer_to_dict(tok)}
    if train_config is not None:
        checkpoint["train_config"] = train_config
    torch.save(checkpoint, folder / "best.pt")
    if evals:
        rows = [f"{s},{t},{v},0,0.001,1000,{s}\n" for s, t, v in evals]
        (folder / "metrics.csv").write_text(METRICS_HEADER + "".join(rows), encoding="utf-8")
        rows = [f"{s},0.001,{'' if s % 2 else 4.0 - s / 10}\n" for s in range(1, evals[-1][0] + 1)]
        (folder / "train_log.csv").write_text("step,lr,train_loss\n" + "".join(rows), encoding="utf-8")
    return folder / "best.pt"


def make_page(checkpoint, out_dir, *flags, prompt=PROMPT):
    """visualize.py on checkpoint into out_dir with the prompt and SAMPLING (or flags): the page's HTML."""
    assert visualize.main(["--checkpoint", str(checkpoint), "--prompt", prompt, "--out_dir", str(out_dir),
                           "--device", "cpu", *(flags or SAMPLING)]) == 0
    return (out_dir / "index.html").read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def char_run(tmp_path_factory):
    """A char GPT-2 with a made-up run's metrics: its run folder and the page made from it."""
    require("matplotlib")
    folder = tmp_path_factory.mktemp("page_char")
    config = GPTConfig(vocab_size=len(set(TEXT)), block_size=32, n_layer=2, n_head=2, n_embd=32)
    checkpoint = save_run(folder / "run", config, CharTokenizer.from_text(TEXT), seed=1,
                          train_config={"batch_size": 8, "recipe": "gpt2", "optimizer": "adamw"}, evals=EVALS)
    return folder / "run", make_page(checkpoint, folder / "pictures")


@pytest.fixture(scope="session")
def bpe_modern_run(tmp_path_factory):
    """A byte-level BPE model with the modern recipe's pieces (RoPE, ReLU²): its folder and page."""
    require("tokenizers")
    require("matplotlib")
    from extras.bpe import BPETokenizer

    folder = tmp_path_factory.mktemp("page_bpe")
    tok = BPETokenizer.train([TEXT + MULTIBYTE], vocab_size=300)
    config = GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=32,
                       position="rope", mlp="relu2")
    train_config = {"batch_size": 8, "recipe": "modern", "optimizer": "muon"}
    checkpoint = save_run(folder / "run", config, tok, seed=2, train_config=train_config, evals=EVALS)
    return folder / "run", make_page(checkpoint, folder / "pictures")


@pytest.fixture(params=["char_run", "bpe_modern_run"])
def run(request):
    """Each run in turn: (folder, page HTML, the page's data, model, tokenizer, the prompt's ids (1, T))."""
    folder, html = request.getfixturevalue(request.param)
    checkpoint = load_checkpoint(folder / "best.pt")
    model, tok = model_from_checkpoint(checkpoint, torch.device("cpu")), tokenizer_from_checkpoint(checkpoint)
    return folder, html, read_page_data(html), model, tok, torch.tensor([tok.encode(PROMPT).tolist()])


def page_tensors(html: str) -> dict[str, np.ndarray]:
    """Each tensor the page stores, read back from its bytes as its JavaScript reads them, as float32."""
    data, blob = read_page_data(html), read_page_weights(html)
    out = {}
    for t in data["weights"]["tensors"]:
        n = int(np.prod(t["shape"]))
        if t["dtype"] == "float32":
            w = np.frombuffer(blob, "<f4", n, t["offset"])
        elif t["dtype"] == "float16":
            w = np.frombuffer(blob, "<f2", n, t["offset"]).astype(np.float32)
        else:
            q = np.frombuffer(blob, np.int8, n, t["offset"]).reshape(t["shape"][0], -1)
            w = q.astype(np.float32) * np.frombuffer(blob, "<f4", t["shape"][0], t["scales"])[:, None]
        out[t["name"]] = w.reshape(t["shape"])
    return out


def test_the_runs_are_what_they_say(char_run, bpe_modern_run):
    char, bpe = (read_page_data(html) for _, html in (char_run, bpe_modern_run))
    assert (char["tokenizer"]["kind"], char["params"]["family"]) == ("char", "GPT-2")
    assert char["params"]["pieces"] == "learned, layernorm, gelu, tied head"
    assert bpe["tokenizer"]["kind"] == "bpe" and len(bpe["tokenizer"]["vocab"]) == 300
    assert (bpe["params"]["recipe"], bpe["params"]["optimizer"]) == ("modern", "muon")
    assert bpe["params"]["family"] == "with 2026 pieces: position rope, mlp relu2"
    assert char["weights"]["format"] == bpe["weights"]["format"] == "float32"  # auto, for small models


def test_the_page_stores_every_weight_exactly_in_float32(run):
    _, html, data, model, _, _ = run
    tensors = page_tensors(html)
    assert list(tensors) == [name for name, _ in model.named_parameters()]  # a tied matrix once
    for name, p in model.named_parameters():
        assert np.array_equal(tensors[name], p.detach().numpy()), name
    assert data["weights"]["bytes"] == len(read_page_weights(html)) >= 4 * model.num_params()


@pytest.mark.parametrize("fmt", ["float16", "int8"])
def test_smaller_formats_store_what_stored_weights_says(char_run, tmp_path, fmt):
    folder, _ = char_run
    html = make_page(folder / "best.pt", tmp_path, *SAMPLING, "--weights", fmt)
    model = model_from_checkpoint(load_checkpoint(folder / "best.pt"), torch.device("cpu"))
    expected, tensors = stored_weights(model, fmt), page_tensors(html)
    for name, p in model.named_parameters():
        assert np.array_equal(tensors[name], expected[name].numpy()), name
        error = (expected[name] - p.detach()).abs().max() / p.detach().abs().max()
        # float16: 11 significant bits; int8: half a step, a step being 1/127 of the row's largest weight
        assert error <= (1e-3 if fmt == "float16" else 1 / 254 + 1e-6)
        if p.dim() == 1:
            assert torch.equal(expected[name], p.detach())  # biases and gains stay float32
    sizes = {t["dtype"] for t in read_page_data(html)["weights"]["tensors"]}
    assert sizes == {"float32", fmt}


def test_the_reference_logits_are_pytorchs_on_the_stored_weights(char_run, tmp_path):
    folder, html = char_run
    model = model_from_checkpoint(load_checkpoint(folder / "best.pt"), torch.device("cpu"))
    idx = torch.tensor([read_page_data(html)["prompt"]["ids"]])
    int8 = make_page(folder / "best.pt", tmp_path, "--weights", "int8")
    for page, fmt in [(html, "float32"), (int8, "int8")]:
        with torch.no_grad():
            logits = model_with_stored_weights(model, fmt)(idx)[0][0, -1]  # (V,) float32
        reference = read_page_data(page)["reference"]
        assert reference["ids"] == idx[0].tolist()
        assert torch.equal(torch.tensor(reference["logits"], dtype=torch.float32), logits)  # written exactly


def test_the_sample_is_what_generate_py_prints_for_that_seed_and_settings(run, capsys):
    folder, _, data, model, tok, idx = run
    s = data["sampling"]
    assert (s["temperature"], s["top_k"], s["seed"], s["max_new_tokens"]) == (0.9, 12, 7, 40)
    ids = [int(t) for t in generate_tokens(model, idx, 40, 0.9, 12, torch.Generator().manual_seed(7))]
    assert data["writer"] == {"ids": ids, "text": tok.decode(ids)}
    capsys.readouterr()
    assert generate.main(["--checkpoint", str(folder / "best.pt"), "--prompt", PROMPT, "--device", "cpu",
                          "--dtype", "float32", *SAMPLING]) == 0
    assert capsys.readouterr().out == PROMPT + data["writer"]["text"] + "\n"


def test_parameter_groups_add_up_to_num_params(run):
    _, _, data, model, _, _ = run
    groups = data["params"]["groups"]
    assert sum(g["count"] for g in groups) == data["params"]["total"] == model.num_params()
    names = [name for g in groups for name, _ in g["tensors"]]
    assert sorted(names) == sorted(name for name, _ in model.named_parameters())  # each once, tied too
    shapes = dict(model.named_parameters())
    assert all(g["count"] == sum(shapes[n].numel() for n, _ in g["tensors"]) for g in groups)
    n_layer = model.config.n_layer
    expected = (["token embedding (= head)"] + (["position embedding"] if "wpe" in model.transformer else [])
                + [f"block {i} {part}" for i in range(n_layer) for part in ("norms", "attention", "MLP")]
                + ["final norm"])
    assert sorted(g["name"] for g in groups) == sorted(expected)
    assert [g["kind"] for g in groups][0] == "embedding"


def tiny_page(model: GPT, **settings) -> tuple[dict, bytes]:
    """page_data for model with Tiny Shakespeare's characters, the default prompt and visualize.py's
    defaults."""
    tok = CharTokenizer(SHAKESPEARE_CHARS)
    ids = tok.encode(visualize.DEFAULT_PROMPT).tolist()
    defaults = {"temperature": 0.8, "top_k": 40, "seed": 1337, "max_new_tokens": 200}
    return page_data(model.eval(), tok, ids, visualize.token_labels(tok), title="t", step=0,
                     train_config=None, metrics_path=None, **{**defaults, **settings})


def test_an_untied_head_is_a_group_of_its_own():
    model = GPT(GPTConfig(**{**asdict(PRESETS["tiny"]), "tie_weights": False}))
    data, _ = tiny_page(model, max_new_tokens=2)
    groups = {g["name"]: g for g in data["params"]["groups"]}
    assert groups["output head"]["count"] == model.lm_head.weight.numel() and "token embedding" in groups
    assert sum(g["count"] for g in groups.values()) == model.num_params()
    assert data["params"]["groups"][-1]["name"] == "output head"  # last, as in the forward pass
    assert data["params"]["family"] == "with 2026 pieces: tie_weights False"
    assert [t["name"] for t in data["weights"]["tensors"]][-1] == "lm_head.weight"  # stored: its own matrix


def test_the_loss_marks_the_best_and_where_val_turns_upward(tmp_path):
    rows = [(0, 4.0, 4.0), (100, 2.0, 2.1), (200, 1.5, 1.8), (300, 1.2, 1.85), (400, 1.0, 1.9)]  # best at 200
    (tmp_path / "metrics.csv").write_text(METRICS_HEADER + "".join(f"{s},{t},{v},0,0.001,0,0\n"
                                                                   for s, t, v in rows))
    (tmp_path / "train_log.csv").write_text("step,lr,train_loss\n" + "".join(
        f"{s},0.001,{'' if s % 2 else 3.0}\n" for s in range(1, 4001)))  # a loss on every other row
    history = loss_history(tmp_path / "metrics.csv", tokens_per_step=2048)
    assert (history["best"]["step"], history["best"]["val_loss"]) == (200, 1.8)
    assert history["turns_up"]["step"] == 300 and history["last"]["step"] == 400
    assert len(history["evals"]) == 5 and len(history["log"]) <= MAX_LOG_POINTS
    assert all(row[2] == 3.0 for row in history["log"]) and history["tokens_per_step"] == 2048
    (tmp_path / "metrics.csv").write_text(METRICS_HEADER + "0,4,4,0,0,0,0\n10,3,3,0,0,0,0\n")
    assert loss_history(tmp_path / "metrics.csv", 1)["turns_up"] is None  # still falling
    assert loss_history(tmp_path / "missing.csv", 1) is None


def test_the_char_run_page_has_the_runs_evaluations(char_run):
    _, html = char_run
    loss = read_page_data(html)["loss"]
    assert [e["step"] for e in loss["evals"]] == [0, 5, 10, 15, 20]
    assert (loss["best"]["step"], loss["turns_up"]["step"]) == (10, 15)
    assert loss["tokens_per_step"] == 8 * 32  # batch 8 x block 32
    assert [row[0] for row in loss["log"]] == list(range(2, 21, 2))  # the rows that have a loss


def test_the_page_fetches_nothing_and_names_no_url(run):
    _, html, _, _, _, _ = run
    weights = re.search(r'class="quill-weights">([^<]*)</script>', html)
    assert re.fullmatch(r"[A-Za-z0-9+/]*={0,2}", weights.group(1))  # the weights: base64 and nothing else
    rest = html.replace(weights.group(1), "")
    sources = [TEMPLATE, *SCRIPTS.values()]
    for text in (rest, *(p.read_text(encoding="utf-8") for p in sources)):
        assert not re.search(r"https?:|//[a-z0-9]|\burl\(|@import|<link|<iframe|<img|\bsrc=|\bfetch\("
                             r"|XMLHttpRequest|\bimport\(|new Worker|WebSocket", text, re.IGNORECASE)
    template = TEMPLATE.read_text(encoding="utf-8")
    for mark in [DATA_MARK, WEIGHTS_MARK, *SCRIPTS]:
        assert template.count(mark) == 1 and mark not in html


def test_token_text_cannot_close_the_script_block():
    html = render_page({"labels": ["</script><script>alert(1)</script>", "<!--"]})
    assert read_page_data(html)["labels"] == ["</script><script>alert(1)</script>", "<!--"]
    assert html.count("</script>") == TEMPLATE.read_text(encoding="utf-8").count("</script>")


def test_the_cpu_default_page_is_under_3_mb():
    # The CPU default's model (the tiny preset at block 64, 65 characters), untrained: the page's size depends
    # only on the shapes, the prompt and the sample's length (visualize.py's defaults), not on training.
    torch.manual_seed(0)
    model = GPT(GPTConfig(**{**asdict(PRESETS["tiny"]), "block_size": 64, "vocab_size": 65}))
    data, weights = tiny_page(model)
    assert data["weights"]["format"] == "float32"  # 0.41M parameters: exact
    assert len(render_page(data, weights).encode("utf-8")) <= 3_000_000


def test_the_medium_preset_page_is_under_32_mb():
    torch.manual_seed(0)
    model = GPT(GPTConfig(**{**asdict(PRESETS["medium"]), "vocab_size": 65}))  # 10.8M parameters
    data, weights = tiny_page(model, max_new_tokens=0)  # the sample's 200 characters add about 1 KB
    assert data["weights"]["format"] == "float16"
    assert len(render_page(data, weights).encode("utf-8")) <= 32_000_000 - 2_000


def test_a_greedy_page_has_its_tokens_and_an_empty_one_none(char_run, tmp_path):
    folder, _ = char_run
    data = read_page_data(make_page(folder / "best.pt", tmp_path, "--temperature", "0",
                                    "--max_new_tokens", "5"))
    model = model_from_checkpoint(load_checkpoint(folder / "best.pt"), torch.device("cpu"))
    with torch.no_grad():
        greedy = model.generate(torch.tensor([data["prompt"]["ids"]]), 5, temperature=0)[0, -5:].tolist()
    assert data["writer"]["ids"] == greedy
    empty = read_page_data(make_page(folder / "best.pt", tmp_path, "--max_new_tokens", "0"))
    assert empty["writer"] == {"ids": [], "text": ""}
