"""index.html in a real browser: headless Chromium opens the page from disk, and the model it runs in
JavaScript (extras/page_model.js, extras/page_tokenizer.js) is checked against PyTorch: its logits, attention
and logit lens for prompts the tests make, its tokenizer on text with every kind of character, its sampling
draw for draw, for a checkpoint of every architecture option and of each tokenizer. Then the figures: each
follows the sliders and the typed text, the writer repeats for a seed, with no JavaScript error and no
request beyond the file itself; and two pages put inside another, as IPython.display.HTML does in a notebook,
each work alone.

The driver is Playwright for Python, pointed at the system's Chromium (Debian's `chromium` package) with
executable_path: it waits by itself for what it acts on and for `expect` conditions (no sleeps, so a busy
machine is only slower), reports console messages and uncaught errors as events, and can watch every request
the page makes. Its own browser download (`playwright install`) is not needed.

Where no browser can be had the test skips and says why; .ci/run sets QUILL_REQUIRE_BROWSER=1, which turns
that skip into a failure, so CI always runs it. QUILL_CHROMIUM points at another Chromium or Chrome (default
/usr/bin/chromium, else `chromium` on the PATH).
"""

import os
import random
import shutil

import pytest
import torch

from conftest import require
from extras.checkpoint import load_checkpoint, model_from_checkpoint
from extras.engine import generate_tokens
from extras.inside import attention_maps
from extras.page import model_with_stored_weights, read_page_data
from extras.checkpoint import tokenizer_from_checkpoint
from extras.tokenizer import CharTokenizer
from model import GPTConfig, next_token_candidates
# The session fixtures of tests/test_page.py: the same two runs, built once for both modules.
from test_page import MULTIBYTE, PROMPT, TEXT, bpe_modern_run, char_run, make_page, save_run  # noqa: F401

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MAX_LOGIT_ERROR = 1e-3  # the bound on |JavaScript - PyTorch| for every logit

# One small checkpoint per line; together they take every value of every GPTConfig option and both tokenizers:
# (GPTConfig fields, tokenizer, visualize.py --weights).
PARITY = {
    "gpt2": (dict(), "char", "float32"),
    "modern": (dict(position="rope", norm="rmsnorm", mlp="swiglu", qk_norm=True, n_kv_head=1,
                    tie_weights=False, bias=False), "char", "float32"),
    "bpe-gqa": (dict(n_head=4, n_kv_head=2, norm="rmsnorm", mlp="relu2", tie_weights=False), "bpe",
                "float32"),
    "gpt2-float16": (dict(), "char", "float16"),
    "modern-int8": (dict(position="rope", qk_norm=True, mlp="swiglu", bias=False), "char", "int8"),
}
# Text with every kind of character byte-level BPE knows: letters, digits, punctuation, contractions, every
# whitespace the pre-tokenizer's \s matches and two it does not (U+FEFF, U+200B), control bytes, and 2-, 3-
# and 4-byte characters (accents, Greek, CJK, emoji with skin tones and joiners, combining marks).
EVERY_KIND = ("Hello world! It's, we're, I'VE, they'll, she'd; don't... 123 4,567.89 ٣ Ⅻ ²\n"
              "\tTabs\r\n\x0b\x0c\x85\xa0\u1680\u2000\u2005\u200a\u2028\u2029\u202f\u205f\u3000 "
              "\ufeff\u200b\n"
              "\x00\x01\x1b\x1f\x7f  double  space   three    \n\n\n" + MULTIBYTE +
              "e\u0301 Привет мир 中文字符 한국어 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 👨‍👩‍👧 🏳️‍🌈 ~`@#$%^&*()_+-=[]{}|\\:;\"<>,./?")


def no_browser(reason: str):
    """Skip with the reason, or fail where a browser is required (CI)."""
    if os.environ.get("QUILL_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}, and QUILL_REQUIRE_BROWSER=1 says this machine must run the browser test")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A headless Chromium context with a fresh profile, for the whole module."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        no_browser("Playwright is not installed (uv sync installs it with the dev dependencies)")
    path = os.environ.get("QUILL_CHROMIUM") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium")
                                                else shutil.which("chromium"))
    if not path or not os.path.exists(path):
        no_browser(f"no Chromium {'at ' + path if path else 'found'} (apt-get install chromium, or set "
                   "QUILL_CHROMIUM to a Chromium or Chrome)")
    with sync_playwright() as p:
        try:
            context = p.chromium.launch_persistent_context(
                tmp_path_factory.mktemp("profile"), executable_path=path, headless=True, args=CHROMIUM_ARGS,
                viewport={"width": 1280, "height": 900})
        except Exception as e:  # Playwright raises its own Error with the browser's log
            no_browser(f"Chromium at {path} did not start ({str(e).strip().splitlines()[0][:200]})")
        yield context
        context.close()


@pytest.fixture
def open_page(browser):
    """Open a page file in a new tab: (tab, problems); problems: console errors, uncaught errors, requests."""
    tabs = []

    def opener(path):
        tab, problems = browser.new_page(), []
        tab.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
               if m.type in ("error", "warning") else None)
        tab.on("pageerror", lambda e: problems.append(f"uncaught: {e}"))
        tab.on("request", lambda r: problems.append(f"request: {r.url}") if r.url != path.as_uri() else None)
        tab.goto(path.as_uri())
        tabs.append(tab)
        return tab, problems

    yield opener
    for tab in tabs:
        tab.close()


def wait_for_writer(tab):
    """Wait until the page's writer has written all its tokens."""
    tab.wait_for_function("document.querySelector('.quill-page').dataset.writer === 'done'")


# ------------------------------------------------------------------------------------------------------------
# The model in JavaScript against PyTorch, for every option.

@pytest.fixture(scope="module")
def parity_pages(tmp_path_factory):
    """name -> (page path, PyTorch on the page's stored weights, tokenizer) for each PARITY checkpoint."""
    require("tokenizers")
    require("matplotlib")
    from extras.bpe import BPETokenizer

    bpe = BPETokenizer.train([TEXT + MULTIBYTE], vocab_size=320)
    pages = {}
    for seed, (name, (fields, kind, fmt)) in enumerate(PARITY.items()):
        tok = CharTokenizer.from_text(TEXT + MULTIBYTE) if kind == "char" else bpe
        config = GPTConfig(**{"vocab_size": tok.vocab_size, "block_size": 24, "n_layer": 2, "n_head": 2,
                              "n_embd": 32, **fields})
        folder = tmp_path_factory.mktemp(name)
        checkpoint = save_run(folder / "run", config, tok, seed=10 + seed)
        make_page(checkpoint, folder / "pictures", "--weights", fmt, "--max_new_tokens", "8",
                  prompt="To be, or not")
        model = model_from_checkpoint(load_checkpoint(checkpoint), torch.device("cpu"))
        pages[name] = (folder / "pictures" / "index.html", model_with_stored_weights(model, fmt), tok)
    return pages


def prompts(model, tok) -> list[list[int]]:
    """The prompts the parity tests feed: one token, a line of text with multi-byte characters, and random
    ids filling the whole context."""
    text = tok.encode(PROMPT + " " + MULTIBYTE).tolist()
    rng = random.Random(0)
    return [text[:1], text[:model.config.block_size],
            [rng.randrange(model.config.vocab_size) for _ in range(model.config.block_size)]]


@pytest.mark.parametrize("name", PARITY)
def test_the_javascript_forward_pass_is_pytorchs(name, parity_pages, open_page):
    path, model, tok = parity_pages[name]
    tab, problems = open_page(path)
    assert tab.evaluate("window.quill.weights") == PARITY[name][2]
    worst = 0.0
    for ids in prompts(model, tok):
        out = tab.evaluate("ids => window.quill.forward(ids)", ids)
        idx = torch.tensor([ids])
        with torch.no_grad():
            logits = model(idx)[0][0]  # (T, V)
        js = torch.tensor(out["logits"])
        assert js.shape == logits.shape
        worst = max(worst, float((js - logits).abs().max()))
        if len(ids) > 1:
            assert logits.std() > 0.5  # logits far from zero: a 1e-3 bound that means something
        maps = attention_maps(model, idx)[:, 0]  # (n_layer, nh, T, T)
        js_maps = torch.tensor(out["attention"], dtype=torch.float32)  # (n_layer, nh, T, T)
        torch.testing.assert_close(js_maps, maps, atol=1e-4, rtol=0)
    print(f"{name}: max |JavaScript - PyTorch| logit {worst:.2e}")
    assert worst <= MAX_LOGIT_ERROR
    assert problems == []


def lens_logits(model, idx: torch.Tensor, t: int) -> torch.Tensor:
    """PyTorch's logit lens at position t: the final norm and the head on the residual stream after the
    embeddings and after each block, (n_layer + 1, V)."""
    streams = []
    record = lambda module, args, output: streams.append(output[0, t])  # (C,)
    hooks = [model.transformer.drop.register_forward_hook(record)]
    hooks += [block.register_forward_hook(record) for block in model.transformer.h]
    try:
        with torch.no_grad():
            model(idx)
            return torch.stack([model.lm_head(model.transformer.ln_f(s)) for s in streams])
    finally:
        for hook in hooks:
            hook.remove()


@pytest.mark.parametrize("name", ["gpt2", "modern", "bpe-gqa"])
def test_the_logit_lens_is_pytorchs(name, parity_pages, open_page):
    path, model, tok = parity_pages[name]
    tab, _ = open_page(path)
    ids = prompts(model, tok)[2]
    for t in (0, 7, len(ids) - 1):
        js = torch.tensor(tab.evaluate("([ids, t]) => window.quill.lens(ids, t)", [ids, t]))
        expected = lens_logits(model, torch.tensor([ids]), t)
        torch.testing.assert_close(js, expected, atol=MAX_LOGIT_ERROR, rtol=0)
    with torch.no_grad():  # the last layer's lens is the model's own prediction
        torch.testing.assert_close(js[-1], model(torch.tensor([ids]))[0][0, -1], atol=MAX_LOGIT_ERROR, rtol=0)


@pytest.mark.parametrize("name", PARITY)
def test_the_javascript_writer_draws_what_generate_py_draws(name, parity_pages, open_page):
    # The same seed gives torch.rand's numbers (a Mersenne Twister in JavaScript), so the same tokens; 60 of
    # them outgrow the 24-token context twice, so the window moves as extras/engine.py moves it.
    path, model, tok = parity_pages[name]
    tab, _ = open_page(path)
    ids = tok.encode(PROMPT).tolist()
    for temperature, top_k, seed in [(0.9, 12, 7), (1.0, None, 1337), (0.0, 5, 0)]:
        out = tab.evaluate("([ids, o]) => window.quill.generate(ids, 60, o)",
                           [ids, {"temperature": temperature, "top_k": top_k, "seed": seed}])
        generator = torch.Generator().manual_seed(seed)
        sample = generate_tokens(model, torch.tensor([ids]), 60, temperature, top_k, generator)
        expected = [int(t) for t in sample]
        assert out["ids"] == expected, (temperature, top_k, seed)
        assert out["text"] == tok.decode(expected)
        if temperature > 0:
            draws = torch.Generator().manual_seed(seed)
            assert out["u"] == [float(torch.rand((1, 1), generator=draws)) for _ in range(60)]  # exactly


@pytest.mark.parametrize("name", ["gpt2", "bpe-gqa"])
def test_the_javascript_tokenizer_is_pythons(name, parity_pages, open_page):
    path, _, tok = parity_pages[name]
    tab, _ = open_page(path)
    if tok.kind == "char":  # every character of the vocabulary, in a shuffled order, and decoding back
        chars = list(tok.chars) * 3
        random.Random(0).shuffle(chars)
        texts = ["".join(chars)]
        assert tab.evaluate("t => { try { window.quill.encode(t); } catch (e) { return e.message; } }",
                            "To be Z#") == "characters not in the vocabulary: \"#\" \"Z\""
    else:  # every kind of character, and 3,000 code points drawn from all of Unicode's planes
        rng = random.Random(0)
        points = [rng.randrange(0x20, 0x110000) for _ in range(3000)]
        texts = [TEXT[:500], EVERY_KIND, "".join(chr(p) for p in points if not 0xD800 <= p < 0xE000)]
    for text in texts:
        ids = tok.encode(text).tolist()
        assert tab.evaluate("t => window.quill.encode(t)", text) == ids
        assert tab.evaluate("ids => window.quill.decode(ids)", ids) == tok.decode(ids) == text
    if tok.kind == "bpe":  # each token alone: a piece of a character decodes to U+FFFD, as in Python
        singles = [[i] for i in range(tok.vocab_size)] + [tok.encode("😀").tolist()[:2]]
        assert tab.evaluate("all => all.map(ids => window.quill.decode(ids))", singles) == [
            tok.decode(ids) for ids in singles]


# ------------------------------------------------------------------------------------------------------------
# The figures, on the two runs of tests/test_page.py.

@pytest.fixture(params=["char_run", "bpe_modern_run"])
def run(request):
    """(page path, page data, PyTorch on the page's weights, tokenizer, prompt ids (1, T)) for each run."""
    folder, _ = request.getfixturevalue(request.param)
    path = folder.parent / "pictures" / "index.html"  # where test_page.make_page wrote it
    checkpoint = load_checkpoint(folder / "best.pt")
    tok = tokenizer_from_checkpoint(checkpoint)
    data = read_page_data(path.read_text(encoding="utf-8"))
    model = model_with_stored_weights(model_from_checkpoint(checkpoint, torch.device("cpu")), "float32")
    return path, data, model, tok, torch.tensor([tok.encode(PROMPT).tolist()])


def shown_probabilities(tab) -> list[tuple[int, float]]:
    """The next-token bars the page shows: (token id, probability), top first."""
    rows = tab.locator('[data-q="next-bars"] .q-row')
    return [(int(r.get_attribute("data-id")), float(r.get_attribute("data-prob"))) for r in rows.all()]


def check_next_token_bars(tab, logits: torch.Tensor, temperature: float, top_k: int) -> None:
    """The bars show the top 15 of next_token_candidates(logits (1, V), temperature, top_k), in order."""
    from playwright.sync_api import expect

    probs, ids = next_token_candidates(logits, temperature, top_k)  # (1, k) each
    k = probs.size(-1)
    expect(tab.locator('[data-q="next-summary"]')).to_contain_text(f"{k} candidate{'s' if k > 1 else ''};")
    shown = shown_probabilities(tab)
    assert len(shown) == min(k, 15)
    order = probs[0].argsort(descending=True)[:len(shown)]  # the whole vocabulary comes in id order
    assert [i for i, _ in shown] == ids[0, order].tolist()
    assert [p for _, p in shown] == pytest.approx(probs[0, order].tolist(), abs=1e-4)


def test_every_figure_comes_from_a_fresh_forward_pass(run, open_page):
    from playwright.sync_api import expect

    path, data, model, tok, idx = run
    tab, problems = open_page(path)
    T = idx.size(1)
    assert float(tab.locator('[data-q="engine"]').get_attribute("data-delta")) <= 1e-4  # float32: near exact
    expect(tab.locator('[data-q="engine"]')).to_contain_text("stored here as float32")
    expect(tab.locator('[data-q="status"]')).to_contain_text(f"A forward pass over these {T} tokens")
    expect(tab.locator('[data-q="attention-keys"] .q-chip[data-weight]')).to_have_count(T)  # the last query
    expect(tab.locator('[data-q="lens"] [data-layer]')).to_have_count(model.config.n_layer + 1)
    with torch.no_grad():
        check_next_token_bars(tab, model(idx)[0][:, -1], 0.9, 12)  # visualize.py's --temperature, --top_k
    wait_for_writer(tab)
    n = len(data["writer"]["ids"])
    expect(tab.locator('[data-q="writer-compare"]')).to_have_text(
        f"The writer above, at generate.py's prompt, settings and seed, wrote the same {n} tokens.")
    assert tab.locator('[data-q="writer-live"]').inner_text() == PROMPT + data["writer"]["text"]
    assert tab.locator('[data-q="writer-final"]').inner_text() == PROMPT + data["writer"]["text"]
    expect(tab.locator('[data-q="loss-chart"] [data-series="val"]')).to_have_count(len(data["loss"]["evals"]))
    assert problems == []


def test_the_sliders_reshape_the_real_logits_as_generate_py_samples(run, open_page):
    from playwright.sync_api import expect

    path, _, model, _, idx = run
    tab, problems = open_page(path)
    with torch.no_grad():
        logits = model(idx)[0][:, -1]  # (1, V)
    for temperature, top_k in [(0.5, 10), (1.5, 3), (0.0, 10), (0.8, model.config.vocab_size)]:
        tab.locator('[data-q="temperature"]').fill(str(temperature))
        tab.locator('[data-q="top-k"]').fill(str(top_k))
        readout = "0 (greedy)" if temperature == 0 else f"{temperature:.2f}"
        expect(tab.locator('[data-q="temperature-value"]')).to_have_text(readout)
        check_next_token_bars(tab, logits, temperature, top_k)
    assert problems == []


def test_the_query_slider_moves_attention_and_the_logit_lens(run, open_page):
    from playwright.sync_api import expect

    path, _, model, _, idx = run
    tab, problems = open_page(path)
    maps = attention_maps(model, idx)[:, 0]  # (n_layer, nh, T, T)
    layer, head = model.config.n_layer - 1, model.config.n_head - 1
    tab.locator('[data-q="layer"]').select_option(str(layer))
    tab.locator('[data-q="head"]').select_option(str(head))
    query, q = tab.locator('[data-q="query"]'), min(5, idx.size(1) - 1) - 1
    query.fill(str(q + 1))
    query.press("ArrowLeft")  # the keyboard moves it too: now query q
    keys = tab.locator('[data-q="attention-keys"] .q-chip[data-weight]')
    expect(keys).to_have_count(q + 1)  # keys 0..q: the later ones are masked
    expect(tab.locator('[data-q="attention-summary"]')).to_contain_text(f"Query {q} ")
    weights = [float(w) for w in keys.evaluate_all("chips => chips.map(c => c.dataset.weight)")]
    assert weights == pytest.approx(maps[layer, head, q, :q + 1].tolist(), abs=1e-4)
    expect(tab.locator('[data-q="lens-summary"]')).to_contain_text(f"For query {q} ")
    lens = torch.softmax(lens_logits(model, idx, q), dim=-1)  # (n_layer + 1, V)
    for row in tab.locator('[data-q="lens"] [data-layer]').all():
        probs = lens[int(row.get_attribute("data-layer"))]
        top = [int(i) for i in row.get_attribute("data-ids").split(",")]
        assert [float(p) for p in row.get_attribute("data-probs").split(",")] == pytest.approx(
            probs[top].tolist(), abs=1e-4)
        assert probs[top[-1]] >= probs.sort(descending=True).values[4] - 1e-4  # the 5 likeliest
    box = tab.locator('[data-q="heatmap"]').bounding_box()  # a click on a row of the map picks that query
    tab.mouse.click(box["x"] + 15, box["y"] + 10 + 2.5 * 280 / idx.size(1))
    expect(keys).to_have_count(3)
    assert problems == []


def test_typed_text_runs_every_figure_again(run, open_page):
    from playwright.sync_api import expect

    path, data, model, tok, _ = run
    tab, problems = open_page(path)
    wait_for_writer(tab)
    text = "Now is the winter" if tok.kind == "char" else "Now is the café 😀"
    ids = tok.encode(text).tolist()
    tab.locator('[data-q="typed"]').fill(text)
    expect(tab.locator('[data-q="typed-ids"]')).to_have_text(f"ids: [{', '.join(map(str, ids))}]")
    expect(tab.locator('[data-q="typed-chips"] .q-chip')).to_have_count(len(ids))
    expect(tab.locator('[data-q="typed-back"]')).to_contain_text("decode(ids) gives the text back exactly")
    expect(tab.locator('[data-q="attention-keys"] .q-chip')).to_have_count(len(ids))
    idx = torch.tensor([ids])
    with torch.no_grad():
        check_next_token_bars(tab, model(idx)[0][:, -1], 0.9, 12)
    # the writer starts again from the new text, with the page's settings
    sample = generate_tokens(model, idx, 40, 0.9, 12, torch.Generator().manual_seed(7))
    expect(tab.locator('[data-q="writer-live"]')).to_have_text(tok.decode(ids + [int(t) for t in sample]))
    expect(tab.locator('[data-q="writer-compare"]')).to_contain_text("Set the prompt and the settings back")
    if tok.kind == "char":  # a character outside the vocabulary is marked, and the figures read the rest
        tab.locator('[data-q="typed"]').fill("To beZ#")
        expect(tab.locator('[data-q="typed-chips"] .q-unknown')).to_have_count(2)
        known = ", ".join(map(str, tok.encode("To be")))
        expect(tab.locator('[data-q="typed-ids"]')).to_have_text(f"ids: [{known}]")
        expect(tab.locator('[data-q="typed-back"]')).to_contain_text('decode(ids) gives "To be"')
        expect(tab.locator('[data-q="attention-keys"] .q-chip')).to_have_count(5)
    assert problems == []


def test_the_writer_repeats_for_a_seed_and_shows_each_draw(run, open_page):
    from playwright.sync_api import expect

    path, data, model, tok, idx = run
    tab, problems = open_page(path)
    wait_for_writer(tab)
    first = tab.locator('[data-q="writer-live"]').inner_text()
    tab.reload()
    wait_for_writer(tab)
    assert tab.locator('[data-q="writer-live"]').inner_text() == first  # the same seed, the same text
    tab.locator('[data-q="writer-seed"]').fill("8")
    tab.locator('[data-q="writer-length"]').fill("15")  # within the context: a full forward pass agrees
    sample = [int(t) for t in generate_tokens(model, idx, 15, 0.9, 12, torch.Generator().manual_seed(8))]
    expect(tab.locator('[data-q="writer-live"]')).to_have_text(PROMPT + tok.decode(sample))
    expect(tab.locator('[data-q="writer-count"]')).to_have_text("token 15 of 15")
    tab.locator('[data-q="writer-back"]').click()  # token 14: its candidates and its draw
    expect(tab.locator('[data-q="writer-count"]')).to_have_text("token 14 of 15")
    draws = torch.Generator().manual_seed(8)  # sample_next_token draws one torch.rand((1, 1)) a token
    u = [float(torch.rand((1, 1), generator=draws)) for _ in range(14)][-1]
    expect(tab.locator('[data-q="writer-summary"]')).to_contain_text(f"u = {u:.4f}")
    with torch.no_grad():
        logits = model(torch.tensor([idx[0].tolist() + sample[:13]]))[0][:, -1]
    probs, ids = next_token_candidates(logits, 0.9, 12)
    assert [int(i) for i in tab.locator('[data-q="writer-bars"] .q-row').evaluate_all(
        "rows => rows.map(r => r.dataset.id)")] == ids[0, :10].tolist()
    chosen = tab.locator('[data-q="writer-bars"] .q-chosen')
    expect(chosen).to_have_count(1 if sample[13] in ids[0, :10] else 0)
    expect(tab.locator('[data-q="writer-text"] .q-chip')).to_have_count(idx.size(1) + 14)
    assert tab.locator('[data-q="writer-text"] .q-now').inner_text() == data["labels"][sample[13]]
    assert problems == []


def test_tokens_and_parameters_show_the_checkpoint(run, open_page):
    from playwright.sync_api import expect

    path, data, model, _, idx = run
    tab, problems = open_page(path)
    chips = tab.locator('[data-q="typed-chips"] .q-chip')
    expect(chips).to_have_count(idx.size(1))
    assert [int(c.locator("small").inner_text()) for c in chips.all()] == idx[0].tolist()
    rows = tab.locator('[data-q="params"] .q-row')
    expect(rows).to_have_count(len(data["params"]["groups"]))
    assert sum(int(r.get_attribute("data-count")) for r in rows.all()) == model.num_params()
    rows.nth(1).hover()
    first_tensor = data["params"]["groups"][1]["tensors"][0][0]
    expect(tab.locator('[data-q="params-detail"]')).to_contain_text(first_tensor)
    expect(tab.locator('[data-q="loss-summary"]')).to_contain_text(f"at step {data['loss']['best']['step']}")
    assert problems == []


def test_two_pages_inside_another_page_as_a_notebook_shows_them(char_run, bpe_modern_run, browser):
    # IPython.display.HTML puts the file's markup into the notebook's page (innerHTML), then runs its scripts
    # (Jupyter and Colab re-create each <script>). Done here for two pages: each must find its own data.
    from playwright.sync_api import expect

    pages = [(folder.parent / "pictures" / "index.html").read_text(encoding="utf-8")
             for folder, _ in (char_run, bpe_modern_run)]
    tab, problems = browser.new_page(), []
    tab.on("pageerror", lambda e: problems.append(f"uncaught: {e}"))
    tab.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    tab.set_content("<h1>a notebook</h1>")
    tab.evaluate("""pages => { for (const html of pages) {
        const cell = document.createElement("div");
        cell.innerHTML = html;
        document.body.append(cell);
        for (const old of cell.querySelectorAll("script:not([type])")) {
          const script = document.createElement("script");
          script.textContent = old.textContent;
          old.replaceWith(script);
        } } }""", pages)
    roots = tab.locator(".quill-page")
    expect(roots).to_have_count(2)
    for i, (_, html) in enumerate((char_run, bpe_modern_run)):
        data = read_page_data(html)
        chips = roots.nth(i).locator('[data-q="typed-chips"] .q-chip')
        expect(chips).to_have_count(len(data["prompt"]["ids"]))
        expect(roots.nth(i).locator('[data-q="params"] .q-row')).to_have_count(len(data["params"]["groups"]))
        expect(roots.nth(i).locator('[data-q="lens"] [data-layer]')).to_have_count(3)
    roots.nth(1).locator('[data-q="top-k"]').fill("1")  # one page's slider moves only that page
    expect(roots.nth(1).locator('[data-q="next-bars"] .q-row')).to_have_count(1)
    first_k = read_page_data(char_run[1])["sampling"]["top_k"]  # the other page keeps its own setting
    expect(roots.nth(0).locator('[data-q="next-bars"] .q-row')).to_have_count(min(first_k, 15))
    roots.nth(0).locator('[data-q="typed"]').fill("All the")  # and its own model: 7 characters
    expect(roots.nth(0).locator('[data-q="attention-keys"] .q-chip')).to_have_count(7)
    assert tab.evaluate("window.quill.tokenizer") == "bpe"  # window.quill: the last page's
    kinds = tab.evaluate("[...document.querySelectorAll('.quill-page')].map(r => r.quill.tokenizer)")
    assert kinds == ["char", "bpe"]  # and each page's own
    tab.close()
    assert problems == []
