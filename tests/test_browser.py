"""index.html in a real browser: headless Chromium opens the page from disk, moves its sliders, and what it
shows is checked against the same numbers computed in Python, with no JavaScript error and no request beyond
the file itself; and two pages put inside another, as IPython.display.HTML does in a notebook, each work alone.

The driver is Playwright for Python, pointed at the system's Chromium (Debian's `chromium` package) with
executable_path: it waits by itself for what it acts on and for `expect` conditions (no sleeps, so a busy
machine is only slower), reports console messages and uncaught errors as events, and can watch every request
the page makes. Selenium would need a chromedriver of the same version as the browser besides; Playwright
talks to the browser directly. Its own browser download (`playwright install`) is not needed.

Where no browser can be had the test skips and says why; .ci/run sets QUILL_REQUIRE_BROWSER=1, which turns
that skip into a failure, so CI always runs it. QUILL_CHROMIUM points at another Chromium or Chrome (default
/usr/bin/chromium, else `chromium` on the PATH).
"""

import os
import shutil

import pytest
import torch

from extras.checkpoint import load_checkpoint, model_from_checkpoint
from extras.page import read_page_data
from extras.inside import attention_maps
from extras.tokenizer import tokenizer_from_checkpoint
from model import next_token_candidates
# The session fixtures of tests/test_page.py: the same two runs, trained once for both modules.
from test_page import PROMPT, bpe_modern_run, char_run  # noqa: F401

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


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
        no_browser(f"no Chromium {'at ' + path if path else 'found'} (apt-get install chromium, or set QUILL_CHROMIUM "
                   "to a Chromium or Chrome)")
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


@pytest.fixture(params=["char_run", "bpe_modern_run"])
def run(request):
    """(page path, page data, model, tokenizer, prompt ids (1, T)) for each kind of run."""
    folder, _ = request.getfixturevalue(request.param)
    path = folder.parent / "pictures" / "index.html"  # where test_page.make_page wrote it
    checkpoint = load_checkpoint(folder / "best.pt")
    tok = tokenizer_from_checkpoint(checkpoint)
    data = read_page_data(path.read_text(encoding="utf-8"))
    model = model_from_checkpoint(checkpoint, torch.device("cpu"))
    return path, data, model, tok, torch.tensor([tok.encode(PROMPT).tolist()])


def shown_probabilities(tab) -> list[tuple[int, float]]:
    """The next-token bars the page shows: (token id, probability), top first."""
    rows = tab.locator('[data-q="next-bars"] .q-row')
    return [(int(r.get_attribute("data-id")), float(r.get_attribute("data-prob"))) for r in rows.all()]


def test_the_sliders_reshape_the_real_logits_as_generate_py_samples(run, open_page):
    from playwright.sync_api import expect

    path, data, model, _, idx = run
    tab, problems = open_page(path)
    with torch.no_grad():
        logits = model(idx)[0][:, -1]  # (1, V)
    for temperature, top_k in [(0.5, 10), (1.5, 3), (0.0, 10), (0.8, model.config.vocab_size)]:
        tab.locator('[data-q="temperature"]').fill(str(temperature))
        tab.locator('[data-q="top-k"]').fill(str(top_k))
        readout = "0 (greedy)" if temperature == 0 else f"{temperature:.2f}"
        expect(tab.locator('[data-q="temperature-value"]')).to_have_text(readout)
        probs, ids = next_token_candidates(logits, temperature, top_k)  # (1, k) each
        k = probs.size(-1)
        expect(tab.locator('[data-q="next-summary"]')).to_contain_text(f"{k} candidate{'s' if k > 1 else ''};")
        shown = shown_probabilities(tab)
        assert len(shown) == min(k, 15)
        order = probs[0].argsort(descending=True)[:len(shown)]  # the whole vocabulary comes in id order
        assert [i for i, _ in shown] == ids[0, order].tolist()
        assert [p for _, p in shown] == pytest.approx(probs[0, order].tolist(), abs=1e-3)
        if (temperature, top_k) == (0.5, 10):
            assert abs(shown[0][1] - float(probs[0, 0])) < 1e-3  # the top probability at T=0.5, k=10
    assert problems == []


def test_the_query_slider_shows_that_rows_attention(run, open_page):
    from playwright.sync_api import expect

    path, data, model, _, idx = run
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
    assert weights == pytest.approx(maps[layer, head, q, :q + 1].tolist(), abs=1e-3)
    assert sum(weights) == pytest.approx(1.0, abs=1e-3)
    expect(tab.locator('[data-q="heatmap"] rect[data-row]')).to_have_count(idx.size(1) * (idx.size(1) + 1) // 2)
    tab.locator('[data-q="heatmap"] rect[data-row="2"]').first.click()  # a click on a row picks that query
    expect(keys).to_have_count(3)
    assert problems == []


def test_tokens_parameters_loss_and_writer_show_the_checkpoint(run, open_page):
    from playwright.sync_api import expect

    path, data, model, tok, idx = run
    tab, problems = open_page(path)
    chips = tab.locator('[data-q="typed-chips"] .q-chip')
    expect(chips).to_have_count(idx.size(1))
    assert [int(c.locator("small").inner_text()) for c in chips.all()] == idx[0].tolist()
    if tok.kind == "char":  # typed text encodes live; a character outside the vocabulary is marked
        tab.locator('[data-q="typed"]').fill("To beZ#")
        expect(tab.locator('[data-q="typed-chips"] .q-unknown')).to_have_count(2)
        expect(tab.locator('[data-q="typed-ids"]')).to_have_text(f"ids: [{', '.join(map(str, tok.encode('To be')))}]")
        expect(tab.locator('[data-q="typed-back"]')).to_contain_text('decode(ids) gives "To be"')
    rows = tab.locator('[data-q="params"] .q-row')
    expect(rows).to_have_count(len(data["params"]["groups"]))
    assert sum(int(r.get_attribute("data-count")) for r in rows.all()) == model.num_params()
    rows.nth(1).hover()
    expect(tab.locator('[data-q="params-detail"]')).to_contain_text(data["params"]["groups"][1]["tensors"][0][0])
    expect(tab.locator('[data-q="loss-chart"] [data-series="val"]')).to_have_count(len(data["loss"]["evals"]))
    expect(tab.locator('[data-q="loss-summary"]')).to_contain_text(f"at step {data['loss']['best']['step']}")
    n = len(data["writer"]["ids"])
    expect(tab.locator('[data-q="writer-count"]')).to_have_text(f"token {n} of {n}")
    tab.locator('[data-q="writer-back"]').click()
    expect(tab.locator('[data-q="writer-count"]')).to_have_text(f"token {n - 1} of {n}")
    chosen = data["writer"]["ids"][n - 2]
    in_top = data["writer"]["steps"][n - 2]["rank"] < 10  # the bars show the step's 10 likeliest candidates
    expect(tab.locator('[data-q="writer-bars"] .q-chosen')).to_have_count(1 if in_top else 0)
    expect(tab.locator('[data-q="writer-summary"]')).to_contain_text(f"p = {data['writer']['steps'][n - 2]['p']:.4f}")
    expect(tab.locator('[data-q="writer-text"] .q-chip')).to_have_count(idx.size(1) + n - 1)
    assert tab.locator('[data-q="writer-text"] .q-now').inner_text() == data["labels"][chosen]
    assert tab.locator('[data-q="writer-final"]').inner_text() == PROMPT + data["writer"]["text"]
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
        expect(roots.nth(i).locator('[data-q="typed-chips"] .q-chip')).to_have_count(len(data["prompt"]["ids"]))
        expect(roots.nth(i).locator('[data-q="params"] .q-row')).to_have_count(len(data["params"]["groups"]))
    roots.nth(1).locator('[data-q="top-k"]').fill("1")  # one page's slider moves only that page
    expect(roots.nth(1).locator('[data-q="next-bars"] .q-row')).to_have_count(1)
    first_k = read_page_data(char_run[1])["sampling"]["top_k"]  # the other page keeps its own setting
    expect(roots.nth(0).locator('[data-q="next-bars"] .q-row')).to_have_count(min(first_k, 15))
    tab.close()
    assert problems == []
