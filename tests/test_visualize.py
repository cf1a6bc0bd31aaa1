"""visualize.py: the numbers behind each picture (attention, next-token distributions, embedding PCA), the
PNGs and index.html for a char run and a BPE checkpoint, and bad input that leaves nothing behind. The page's
own data is checked in tests/test_page.py, the page and the model it runs in a browser in
tests/test_browser.py."""

import importlib.util
from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F

import visualize
from extras.checkpoint import load_checkpoint, model_from_checkpoint, tokenizer_from_checkpoint
from extras.files import save_checkpoint
from conftest import needs, require, run_train
from model import GPT, GPTConfig
from extras.bpe import BPETokenizer
from extras.tokenizer import CharTokenizer, tokenizer_to_dict

TEXT = "\n".join(["To be, or not to be: that is the question.", "All the world's a stage,",
                  "And all the men and women merely players;",
                  "Now is the winter of our discontent!"] * 100) + "\n"
PROMPT = "To be, or not"


@pytest.fixture(scope="module")
def char_run(tmp_path_factory):
    """A tiny char model trained for a few steps: its run folder (best.pt, metrics.csv)."""
    folder = tmp_path_factory.mktemp("char")
    (folder / "text.txt").write_text(TEXT, encoding="utf-8")
    assert run_train(folder / "text.txt", folder / "run", "--max_iters", "4", "--eval_interval", "2") == 0
    return folder / "run"


@pytest.fixture(scope="module")
def bpe_checkpoint(tmp_path_factory):
    """An untrained BPE model with RoPE, saved as train.py saves one (its folder has no metrics.csv)."""
    require("tokenizers")
    tok = BPETokenizer.train([TEXT + "Ωμέγα café\n"], vocab_size=300)
    config = GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=32,
                       position="rope")
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("bpe") / "best.pt"
    save_checkpoint(path, {"model": GPT(config).state_dict(), "model_config": asdict(config), "step": 0,
                           "tokenizer": tokenizer_to_dict(tok)})
    return path


def load(path):
    """The model (CPU) and tokenizer a checkpoint holds."""
    checkpoint = load_checkpoint(path)
    return model_from_checkpoint(checkpoint, torch.device("cpu")), tokenizer_from_checkpoint(checkpoint)


def encode(tokenizer, text: str) -> torch.Tensor:
    return torch.tensor([tokenizer.encode(text).tolist()], dtype=torch.long)  # (1, T)


def test_the_default_prompt_is_in_the_tiny_shakespeare_vocabulary(corpus_path):
    tok = CharTokenizer.from_text(corpus_path.read_text(encoding="utf-8"))
    assert tok.unknown(visualize.DEFAULT_PROMPT) == []


def test_attention_rows_sum_to_one_and_never_look_ahead(char_run, bpe_checkpoint):
    for path, prompt in [(char_run / "best.pt", PROMPT), (bpe_checkpoint, "Ωμέγα café, to be")]:
        model, tok = load(path)
        idx = encode(tok, prompt)
        T = idx.size(1)
        maps = visualize.attention_for(model, idx)
        assert maps.shape == (model.config.n_layer, model.config.n_head, T, T)
        torch.testing.assert_close(maps.sum(dim=-1), torch.ones(maps.shape[:-1]))
        assert (maps.triu(diagonal=1) == 0).all()  # no query attends to a later key
        # every earlier key counts
        assert (maps.tril() > 0).sum() == maps.shape[0] * maps.shape[1] * T * (T + 1) // 2


def test_attention_of_the_first_tokens_is_the_same_as_in_the_whole_prompt(char_run):
    # attention.png shows only the first ATTENTION_TOKENS tokens of a long prompt; causality makes that exact.
    model, tok = load(char_run / "best.pt")
    idx = encode(tok, PROMPT)
    torch.testing.assert_close(visualize.attention_for(model, idx[:, :5]),
                               visualize.attention_for(model, idx)[:, :, :5, :5])


def test_distributions_sum_to_one_top_k_keeps_k_and_temperature_sharpens(char_run):
    model, tok = load(char_run / "best.pt")
    idx = encode(tok, PROMPT)
    settings = visualize.SAMPLING_SETTINGS + [("top-k 3", 1.0, 3)]
    probs = visualize.distributions(model, idx, settings)
    V = tok.vocab_size
    assert probs.shape == (len(settings), V)
    torch.testing.assert_close(probs.sum(dim=-1), torch.ones(len(settings)))
    raw = F.softmax(model(idx)[0][0, -1].detach(), dim=-1)  # (V,)
    torch.testing.assert_close(probs[0], raw)
    for row, (_, _, top_k) in zip(probs, settings):
        assert (row > 0).sum() == min(top_k or V, V)
    top3 = raw.topk(3).indices
    torch.testing.assert_close(probs[-1][top3], raw[top3] / raw[top3].sum())  # renormalised over the 3 kept
    by_name = dict(zip([name for name, _, _ in settings], probs))
    best = raw.argmax()
    assert by_name["T=0.5"][best] > by_name["T=0.8"][best] > raw[best] > by_name["T=1.2"][best]


def test_embedding_pca_has_one_labelled_point_per_token_on_the_directions_of_most_variance(char_run):
    model, tok = load(char_run / "best.pt")
    points, explained = visualize.embedding_pca(model)
    labels = visualize.token_labels(tok)
    assert points.shape == (tok.vocab_size, 2) and len(labels) == tok.vocab_size
    assert labels == [{" ": "␣", "\n": "⏎"}.get(ch, ch) for ch in tok.chars]
    assert labels[tok.stoi[" "]] == "␣" and labels[tok.stoi["\n"]] == "⏎"
    wte = model.transformer.wte.weight.detach()
    centred = wte - wte.mean(dim=0)  # (V, C)
    total = centred.var(dim=0).sum()
    # the axis labels' shares are the points' spread
    torch.testing.assert_close(points.var(dim=0) / total, explained)
    assert 1 >= explained[0] >= explained[1] > 0
    # no single embedding dimension spreads the tokens more
    assert points[:, 0].var() >= centred.var(dim=0).max()


def test_tokens_are_classed_by_their_first_character():
    got = [visualize.token_class(x) for x in ["a", "b", "A", "3", "␣", "⏎", ";", "␣the", "␣And", "<f0 9f>"]]
    assert got == ["vowel", "consonant", "capital", "digit", "other", "other", "other", "consonant",
                   "capital", "other"]


def test_bpe_labels_are_token_text_or_hex_for_partial_characters(bpe_checkpoint):
    _, tok = load(bpe_checkpoint)
    pieces = tok.token_bytes()
    labels = visualize.token_labels(tok)
    assert len(labels) == len(pieces) == tok.vocab_size
    # every byte is a token
    assert sorted(p for p in pieces if len(p) == 1) == [bytes([b]) for b in range(256)]
    for i, (piece, label) in enumerate(zip(pieces, labels)):
        try:
            text = piece.decode("utf-8")
        except UnicodeDecodeError:
            assert label == f"<{piece.hex(' ')}>"
        else:
            assert tok.decode([i]) == text and label == visualize.visible(text)
    prompt = "to be 😀"  # the emoji is not in the text: four byte tokens, none a whole character
    ids = tok.encode(prompt).tolist()
    assert b"".join(pieces[i] for i in ids) == prompt.encode("utf-8")
    assert [labels[i] for i in ids][-4:] == ["<f0>", "<9f>", "<98>", "<80>"]
    assert any(label.startswith("␣") for label in labels)  # " the" and friends show their space


def png_files(folder):
    """The first bytes of each file in folder, by name: PNGs start with the PNG signature, index.html with
    <!doctype."""
    return {p.name: p.read_bytes()[:8] for p in folder.iterdir()}


PNG, HTML = b"\x89PNG\r\n\x1a\n", b"<!doctyp"


@needs("matplotlib")
def test_a_run_gets_every_picture(char_run, tmp_path, capsys):
    out_dir = tmp_path / "pictures"
    capsys.readouterr()
    assert visualize.main(["--checkpoint", str(char_run / "best.pt"), "--prompt", PROMPT,
                           "--out_dir", str(out_dir), "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # loss.png: the run has a metrics.csv
    names = ["attention.png", "next_token.png", "embeddings.png", "loss.png", "index.html"]
    assert png_files(out_dir) == {name: HTML if name.endswith(".html") else PNG for name in names}
    wrote = [line for line in lines if line.startswith("wrote ")]
    assert [line.split(":")[0] for line in wrote] == [f"wrote {out_dir / name}" for name in names]
    assert f"over the prompt's {len(PROMPT)} tokens" in wrote[0]
    heads = [line for line in lines if line.startswith("  layer ")]  # how far back each head looks
    # TINY_FLAGS: 1 layer, 2 heads
    assert len(heads) == 1 * 2 and all("1, 2, 3 back:" in line for line in heads)
    assert "the page that runs the model" in wrote[-1] and "weights as float32" in wrote[-1]


@needs("matplotlib")
def test_a_bpe_checkpoint_without_metrics_gets_three_pictures_and_the_page(bpe_checkpoint, tmp_path, capsys):
    out_dir = tmp_path / "pictures"
    capsys.readouterr()
    assert visualize.main(["--checkpoint", str(bpe_checkpoint), "--prompt", "Ωμέγα 😀, to be",
                           "--out_dir", str(out_dir), "--device", "cpu"]) == 0
    assert png_files(out_dir) == {"attention.png": PNG, "next_token.png": PNG, "embeddings.png": PNG,
                                  "index.html": HTML}
    assert sum(line.startswith("wrote ") for line in capsys.readouterr().out.splitlines()) == 4


@needs("matplotlib")
def test_a_long_prompt_shows_its_first_tokens_and_says_so(char_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(visualize, "ATTENTION_TOKENS", 8)  # the tiny model's context is shorter than 48
    capsys.readouterr()
    assert visualize.main(["--checkpoint", str(char_run / "best.pt"), "--prompt", PROMPT,
                           "--out_dir", str(tmp_path), "--device", "cpu"]) == 0
    assert f"over the first 8 of the prompt's {len(PROMPT)} tokens" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["too long", "unknown characters", "empty", "missing file",
                                  "not a checkpoint", "not a train.py dict", "out_dir is a file",
                                  "negative temperature", "top_k 0", "weights bfloat16"])
def test_bad_input_is_one_line_and_writes_nothing(case, char_run, tmp_path, capsys):
    checkpoint, prompt, out_dir = char_run / "best.pt", PROMPT, tmp_path / "pictures" / "run"
    expected = {"too long": "the prompt is 60 tokens but this model sees at most 32",
                "unknown characters": "never saw: '#' 'Z' '😀'", "empty": "--prompt must not be empty",
                "missing file": "no checkpoint at", "not a checkpoint": "is not a readable checkpoint",
                "not a train.py dict": "is not a checkpoint written by train.py",
                "out_dir is a file": "is a file", "negative temperature": "--temperature must be >= 0",
                "top_k 0": "--top_k >= 1", "weights bfloat16": "--weights"}[case]
    sampling = {"negative temperature": ["--temperature", "-0.5"], "top_k 0": ["--top_k", "0"],
                "weights bfloat16": ["--weights", "bfloat16"]}.get(case, [])
    if case == "too long":
        prompt = "To be " * 10
    elif case == "unknown characters":
        prompt = "To be Z#😀"
    elif case == "empty":
        prompt = ""
    elif case == "missing file":
        checkpoint = tmp_path / "missing.pt"
    elif case == "not a checkpoint":
        checkpoint = tmp_path / "notes.pt"
        checkpoint.write_bytes(b"these are notes, not weights\n")
    elif case == "not a train.py dict":
        checkpoint = tmp_path / "other.pt"
        torch.save({"weights": torch.zeros(3)}, checkpoint)
    elif case == "out_dir is a file":
        out_dir = tmp_path / "pictures"
        out_dir.write_text("keep me")
    capsys.readouterr()
    code = visualize.main(["--checkpoint", str(checkpoint), "--prompt", prompt, "--out_dir", str(out_dir),
                           "--device", "cpu", *sampling])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == "" and captured.err.count("\n") == 1 and captured.err.startswith("error: ")
    assert expected in captured.err
    if case == "out_dir is a file":
        assert out_dir.read_text() == "keep me"
    else:
        assert not (tmp_path / "pictures").exists()


def test_attention_by_distance_reads_the_diagonals():
    T = 6
    previous = torch.zeros(1, 2, T, T)
    # head 0: all weight one token back (the first token: on itself)
    previous[0, 0] = torch.eye(T).roll(-1, dims=1).tril()
    previous[0, 0, 0, 0] = 1.0
    previous[0, 1] = torch.ones(T, T).tril() / torch.arange(1, T + 1)[:, None]  # head 1: even over the past
    by_distance = visualize.attention_by_distance(previous)  # (1, 2, 4)
    assert by_distance.shape == (1, 2, 4)
    assert by_distance[0, 0].tolist() == pytest.approx([1 / T, 1.0, 0.0, 0.0])
    expected_even = [sum(1 / (t + 1) for t in range(d, T)) / (T - d) for d in range(4)]
    assert by_distance[0, 1].tolist() == pytest.approx(expected_even)


def test_without_matplotlib_one_line_says_how_to_get_it(char_run, tmp_path, capsys, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real_find_spec(name, *a))
    out_dir = tmp_path / "pictures"
    assert visualize.main(["--checkpoint", str(char_run / "best.pt"), "--out_dir", str(out_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "pip install matplotlib" in err
    assert not out_dir.exists()


@needs("matplotlib")
def test_a_one_token_prompt_still_draws_and_reports(char_run, tmp_path, capsys):
    out_dir = tmp_path / "pictures"
    capsys.readouterr()
    assert visualize.main(["--checkpoint", str(char_run / "best.pt"), "--prompt", "T",
                           "--out_dir", str(out_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "  layer 0 head 0: mean weight on the token itself: 100%; most read: 'T'" in lines
    assert (out_dir / "attention.png").read_bytes()[:4] == b"\x89PNG"
