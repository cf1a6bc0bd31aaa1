"""index.html, visualize.py's interactive page (extras/page.py): the numbers it holds are the model's, its
sample is generate.py's, it fetches nothing, and it stays small. tests/test_browser.py opens it in a browser.

Two tiny trained runs cover both tokenizers and both recipes: a char GPT-2 and a BPE model with --recipe
modern (RoPE, ReLU², Muon). Session-scoped, so tests/test_browser.py reuses them.
"""

import re
from dataclasses import asdict

import pytest
import torch

import generate
import visualize
from conftest import require, run_train
from extras.checkpoint import load_checkpoint, model_from_checkpoint
from extras.engine import generate_tokens
from extras.inside import attention_maps
from extras.metrics import read_metrics
from extras.page import DATA_MARK, MAX_LOG_POINTS, TEMPLATE, loss_history, page_data, read_page_data, render_page
from extras.tokenizer import CharTokenizer, tokenizer_from_checkpoint
from model import GPT, PRESETS, GPTConfig, next_token_candidates

TEXT = "\n".join(["To be, or not to be: that is the question.", "All the world's a stage,",
                  "And all the men and women merely players;", "Now is the winter of our discontent!"] * 100) + "\n"
PROMPT = "To be, or not"
SAMPLING = ["--temperature", "0.9", "--top_k", "12", "--seed", "7", "--max_new_tokens", "40"]  # not defaults
SHAKESPEARE_CHARS = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # its 65


def make_page(run, out_dir, *flags):
    """visualize.py on run/best.pt into out_dir with PROMPT and SAMPLING (or flags): the page's HTML."""
    assert visualize.main(["--checkpoint", str(run / "best.pt"), "--prompt", PROMPT, "--out_dir", str(out_dir),
                           "--device", "cpu", *(flags or SAMPLING)]) == 0
    return (out_dir / "index.html").read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def char_run(tmp_path_factory):
    """A char GPT-2 trained 20 steps, evaluated every 5: its run folder and the page made from it."""
    require("matplotlib")
    folder = tmp_path_factory.mktemp("page_char")
    (folder / "text.txt").write_text(TEXT, encoding="utf-8")
    assert run_train(folder / "text.txt", folder / "run", "--max_iters", "20", "--eval_interval", "5",
                     "--log_interval", "2") == 0
    return folder / "run", make_page(folder / "run", folder / "pictures")


@pytest.fixture(scope="session")
def bpe_modern_run(tmp_path_factory):
    """A byte-level BPE model, modern recipe (RoPE, ReLU², Muon), trained 20 steps: its folder and page."""
    require("tokenizers")
    require("matplotlib")
    folder = tmp_path_factory.mktemp("page_bpe")
    (folder / "text.txt").write_text(TEXT + "Ωμέγα café 😀\n", encoding="utf-8")
    assert run_train(folder / "text.txt", folder / "run", "--tokenizer", "bpe", "--vocab_size", "300", "--recipe",
                     "modern", "--max_iters", "20", "--eval_interval", "10") == 0
    return folder / "run", make_page(folder / "run", folder / "pictures")


@pytest.fixture(params=["char_run", "bpe_modern_run"])
def run(request):
    """Each run in turn: (folder, page HTML, the page's data, model, tokenizer, the prompt's ids (1, T))."""
    folder, html = request.getfixturevalue(request.param)
    checkpoint = load_checkpoint(folder / "best.pt")
    model, tok = model_from_checkpoint(checkpoint, torch.device("cpu")), tokenizer_from_checkpoint(checkpoint)
    return folder, html, read_page_data(html), model, tok, torch.tensor([tok.encode(PROMPT).tolist()])


def test_the_runs_are_what_they_say(char_run, bpe_modern_run):
    char, bpe = (read_page_data(html) for _, html in (char_run, bpe_modern_run))
    assert (char["tokenizer"], char["params"]["family"]) == ("char", "GPT-2")
    assert char["params"]["pieces"] == "learned, layernorm, gelu, tied head"
    assert bpe["tokenizer"] == "bpe" and bpe["chars"] is None
    assert (bpe["params"]["recipe"], bpe["params"]["optimizer"]) == ("modern", "muon")
    assert bpe["params"]["family"] == "with 2026 pieces: position rope, mlp relu2"


def test_attention_rows_sum_to_one_are_zero_above_the_diagonal_and_are_the_models(run):
    _, _, data, model, _, idx = run
    maps = torch.tensor(data["attention"])  # (n_layer, nh, T, T), rounded to 4 decimals
    T = idx.size(1)
    assert maps.shape == (model.config.n_layer, model.config.n_head, T, T)
    assert (maps.triu(diagonal=1) == 0).all()  # no query reads a later key
    torch.testing.assert_close(maps.sum(-1), torch.ones(maps.shape[:-1]), atol=T * 5e-5, rtol=0)
    torch.testing.assert_close(maps, attention_maps(model, idx)[:, 0], atol=5e-5, rtol=0)


def test_logits_are_a_forward_pass_exactly(run):
    _, _, data, model, _, idx = run
    with torch.no_grad():
        logits = model(idx)[0][0, -1]  # (V,) float32
    assert torch.equal(torch.tensor(data["logits"], dtype=torch.float32), logits)  # float32 written exactly


def test_the_sample_is_what_generate_py_prints_for_that_seed_and_settings(run, capsys):
    folder, _, data, model, tok, idx = run
    s = data["sampling"]
    assert (s["temperature"], s["top_k"], s["seed"], s["max_new_tokens"]) == (0.9, 12, 7, 40)
    ids = [int(t) for t in generate_tokens(model, idx, 40, 0.9, 12, torch.Generator().manual_seed(7))]
    assert data["writer"]["ids"] == ids
    capsys.readouterr()
    assert generate.main(["--checkpoint", str(folder / "best.pt"), "--prompt", PROMPT, "--device", "cpu",
                          "--dtype", "float32", *SAMPLING]) == 0
    assert capsys.readouterr().out == PROMPT + data["writer"]["text"] + "\n"
    assert data["writer"]["text"] == tok.decode(ids)


def test_each_writer_step_shows_the_distribution_its_token_was_drawn_from(run):
    _, _, data, model, _, idx = run
    replay = torch.Generator().manual_seed(7)
    full = torch.tensor([idx[0].tolist() + data["writer"]["ids"]])
    for i, step in enumerate(data["writer"]["steps"]):
        assert step["u"] == round(float(torch.rand((1, 1), generator=replay)), 4)  # sample_next_token's draw
        if idx.size(1) + i > model.config.block_size:
            continue  # past the context the engine's window moves; until then a full forward pass agrees
        with torch.no_grad():
            logits = model(full[:, :idx.size(1) + i])[0][:, -1]  # (1, V)
        probs, ids = next_token_candidates(logits, 0.9, 12)  # (1, 12), most likely first
        p = torch.zeros(logits.size(-1)).scatter_(0, ids[0], probs[0])  # (V,): zero outside the 12 candidates
        assert len(step["ids"]) == len(step["probs"]) == 10
        # The page's 10 are the 10 likeliest (the KV cache's rounding may swap two within 1e-6 of each other).
        torch.testing.assert_close(torch.tensor(step["probs"]), p[step["ids"]], atol=5e-5, rtol=0)
        assert p[step["ids"]].min() >= probs[0, 9] - 1e-6
        chosen = p[data["writer"]["ids"][i]]
        assert step["p"] == pytest.approx(float(chosen), abs=1e-6)
        assert (probs[0] > chosen + 1e-6).sum() <= step["rank"] <= (probs[0] > chosen - 1e-6).sum()


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


def test_an_untied_head_is_a_group_of_its_own():
    model = GPT(GPTConfig(**{**asdict(PRESETS["tiny"]), "tie_weights": False}))
    data = page_data(model.eval(), CharTokenizer(SHAKESPEARE_CHARS), [1, 2, 3], list(SHAKESPEARE_CHARS), title="t",
                     step=0, train_config=None, metrics_path=None, attention_tokens=48, temperature=0.8, top_k=40,
                     seed=1, max_new_tokens=2)
    groups = {g["name"]: g for g in data["params"]["groups"]}
    assert groups["output head"]["count"] == model.lm_head.weight.numel() and "token embedding" in groups
    assert sum(g["count"] for g in groups.values()) == model.num_params()
    assert data["params"]["groups"][-1]["name"] == "output head"  # last, as in the forward pass
    assert data["params"]["family"] == "with 2026 pieces: tie_weights False"


def test_the_loss_marks_the_best_and_where_val_turns_upward(tmp_path):
    rows = [(0, 4.0, 4.0), (100, 2.0, 2.1), (200, 1.5, 1.8), (300, 1.2, 1.85), (400, 1.0, 1.9)]  # best at 200
    (tmp_path / "metrics.csv").write_text("step,train_loss,val_loss,val_bpc,lr,tokens_per_s,elapsed_s\n" + "".join(
        f"{s},{t},{v},0,0.001,0,0\n" for s, t, v in rows))
    (tmp_path / "train_log.csv").write_text("step,lr,train_loss\n" + "".join(
        f"{s},0.001,{'' if s % 2 else 3.0}\n" for s in range(1, 4001)))  # a loss on every other row
    history = loss_history(tmp_path / "metrics.csv", tokens_per_step=2048)
    assert (history["best"]["step"], history["best"]["val_loss"]) == (200, 1.8)
    assert history["turns_up"]["step"] == 300 and history["last"]["step"] == 400
    assert len(history["evals"]) == 5 and len(history["log"]) <= MAX_LOG_POINTS
    assert all(row[2] == 3.0 for row in history["log"]) and history["tokens_per_step"] == 2048
    (tmp_path / "metrics.csv").write_text("step,train_loss,val_loss,val_bpc,lr,tokens_per_s,elapsed_s\n"
                                          "0,4,4,0,0,0,0\n10,3,3,0,0,0,0\n")
    assert loss_history(tmp_path / "metrics.csv", 1)["turns_up"] is None  # still falling
    assert loss_history(tmp_path / "missing.csv", 1) is None


def test_the_char_run_page_has_the_runs_evaluations(char_run):
    folder, html = char_run
    loss = read_page_data(html)["loss"]
    assert [e["step"] for e in loss["evals"]] == [0, 5, 10, 15, 20]
    assert loss["tokens_per_step"] == 8 * 32  # TINY_FLAGS: batch 8 x block 32
    log = read_metrics(folder / "train_log.csv")  # a loss every 2nd step (--log_interval 2) and at each eval
    logged = [int(r["step"]) for r in log if r["train_loss"] == r["train_loss"]]  # rows with a loss
    assert [row[0] for row in loss["log"]] == logged == [2, 4, 5, 6, 8, 10, 12, 14, 15, 16, 18, 20]


def test_the_page_fetches_nothing_and_names_no_url(run):
    _, html, _, _, _, _ = run
    for text in (html, TEMPLATE.read_text(encoding="utf-8")):
        assert not re.search(r"https?:|//[a-z0-9]|\burl\(|@import|<link|<iframe|<img|\bsrc=|\bfetch\(|XMLHttpRequest",
                             text, re.IGNORECASE)
    assert TEMPLATE.read_text(encoding="utf-8").count(DATA_MARK) == 1 and DATA_MARK not in html


def test_token_text_cannot_close_the_script_block():
    html = render_page({"labels": ["</script><script>alert(1)</script>", "<!--"]})
    assert read_page_data(html)["labels"] == ["</script><script>alert(1)</script>", "<!--"]
    assert html.count("</script>") == TEMPLATE.read_text(encoding="utf-8").count("</script>")


def test_the_tiny_preset_page_stays_small():
    # The CPU default's model size (the tiny preset, 65 characters), untrained: the page's size does not
    # depend on training, only on the shapes, the prompt and the sample's length (visualize.py's defaults).
    torch.manual_seed(0)
    model = GPT(GPTConfig(**{**asdict(PRESETS["tiny"]), "vocab_size": 65})).eval()
    tok = CharTokenizer(SHAKESPEARE_CHARS)
    html = render_page(page_data(model, tok, tok.encode(visualize.DEFAULT_PROMPT).tolist(),
                                 visualize.token_labels(tok), title="tiny", step=0, train_config=None,
                                 metrics_path=None, attention_tokens=visualize.ATTENTION_TOKENS, temperature=0.8,
                                 top_k=40, seed=1337, max_new_tokens=200))
    assert len(html.encode("utf-8")) < 100_000


def test_a_greedy_page_has_one_candidate_and_no_draws(char_run, tmp_path):
    folder, _ = char_run
    data = read_page_data(make_page(folder, tmp_path, "--temperature", "0", "--max_new_tokens", "5"))
    assert all(step["p"] == 1.0 and step["rank"] == 0 and "u" not in step for step in data["writer"]["steps"])
    assert data["writer"]["ids"] == [s["ids"][0] for s in data["writer"]["steps"]]
    empty = read_page_data(make_page(folder, tmp_path, "--max_new_tokens", "0"))
    assert empty["writer"] == {"ids": [], "steps": [], "text": ""}
