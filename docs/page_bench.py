"""Measure visualize.py's page against its targets: its size, and its speed in headless Chromium.

    .venv/bin/python docs/page_bench.py                    # the CPU default's model and the medium preset
    .venv/bin/python docs/page_bench.py --presets medium --weights int8

For each model (untrained: random weights give the same sizes and speeds as trained ones; the tiny preset at
the CPU default's context of 64 and Tiny Shakespeare's 65 characters, the medium preset at 256), it writes
the page with visualize.py's own entry and its defaults, opens it from disk in Chromium (Debian's, or
QUILL_CHROMIUM) with Playwright, and times, inside the page with performance.now():

    load       from navigation until the page has read its weights and filled every figure
    generate   window.quill.generate after the default prompt: 200 tokens with the KV cache, the prompt's own
               forward pass included, in tokens per second
    forward    one forward pass over a whole context (block_size tokens) with every attention map, as the
               figures need it
    typed      a whole context of text typed into figure 1, until every figure is drawn again
    inline     the page put into another page as a notebook shows it (innerHTML, scripts re-created), until
               its figures are filled

Each speed is the median of --repeats runs after one warm-up. Prints a Markdown table for docs/page.md with
the machine: CPU model, cores, torch's CPU capability, Chromium's and Playwright's versions, and the load
average before and after (other work on a shared machine slows the page's single JavaScript thread).
"""

import argparse
import importlib.metadata
import os
import platform
import statistics
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import visualize  # noqa: E402
from extras.tokenizer import CharTokenizer, tokenizer_to_dict  # noqa: E402
from model import GPT, PRESETS, GPTConfig  # noqa: E402

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHAKESPEARE_CHARS = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # its 65
MODELS = {"tiny": {"block_size": 64}, "small": {}, "medium": {}}  # tiny: the CPU default's context
TARGETS = {"tiny": 3_000_000, "medium": 32_000_000}  # page bytes (the 3 MB and 32 MB)
LONG_TEXT = ("ROMEO:\nBut soft, what light through yonder window breaks? It is the east, and Juliet is "
             "the sun.\nArise, fair sun, and kill the envious moon, who is already sick and pale with grief, "
             "that thou her maid art far more fair than she. Be not her maid, since she is envious; her "
             "vestal livery is but sick and green, and none but fools do wear it; cast it off.\n") * 2

TIME_GENERATE = """([prompt, n]) => {
  const start = performance.now();
  const out = window.quill.generate(prompt, n, { temperature: 0.8, top_k: 40, seed: 1337 });
  return [out.ids.length, performance.now() - start];
}"""
TIME_FORWARD = """ids => {
  const start = performance.now();
  window.quill.useCaches(null);
  window.quill.model.forward(ids, { attention: true });
  return performance.now() - start;
}"""
TIME_TYPED = """text => {
  const box = document.querySelector('[data-q="typed"]');
  const start = performance.now();
  box.value = text;
  box.dispatchEvent(new Event("input"));
  return new Promise(done => setTimeout(() => done(performance.now() - start), 0));
}"""
TIME_INLINE = """html => {
  const start = performance.now();
  const cell = document.createElement("div");
  cell.innerHTML = html;
  document.body.append(cell);
  for (const old of cell.querySelectorAll("script:not([type])")) {
    const script = document.createElement("script");
    script.textContent = old.textContent;
    old.replaceWith(script);
  }
  const filled = cell.querySelectorAll('[data-q="lens"] [data-layer]').length > 0;
  return [filled, performance.now() - start];
}"""


def write_page(name: str, folder: Path, weights: str) -> Path:
    """An untrained checkpoint of preset `name` with Tiny Shakespeare's characters, and its page."""
    config = GPTConfig(**{**asdict(PRESETS[name]), "vocab_size": 65, "dropout": 0.0, **MODELS[name]})
    torch.manual_seed(0)
    model = GPT(config)
    checkpoint = folder / name / "best.pt"
    checkpoint.parent.mkdir(parents=True)
    torch.save({"model": model.state_dict(), "model_config": asdict(config), "step": 0,
                "tokenizer": tokenizer_to_dict(CharTokenizer(SHAKESPEARE_CHARS))}, checkpoint)
    assert visualize.main(["--checkpoint", str(checkpoint), "--out_dir", str(folder / name / "pictures"),
                           "--device", "cpu", "--weights", weights]) == 0
    return folder / name / "pictures" / "index.html"


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, or what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def median_of(repeats: int, measure) -> float:
    """The median of `repeats` calls of measure() after one warm-up call (the JIT compiles the hot loops)."""
    measure()
    return statistics.median(measure() for _ in range(repeats))


def bench(path: Path, context, repeats: int) -> dict:
    """Every figure of one page, opened in a new tab."""
    tab, errors = context.new_page(), []
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
    tab.goto(path.as_uri())
    tab.wait_for_function("window.quill !== undefined", timeout=120_000)
    load = tab.evaluate("performance.now()")  # the page's script ran to the end: every figure is filled
    config = tab.evaluate("window.quill.config")
    prompt = tab.evaluate("window.quill.encode(document.querySelector('[data-q=\"typed\"]').value)")
    n, ms = 0, []
    for _ in range(repeats + 1):
        n, t = tab.evaluate(TIME_GENERATE, [prompt, 200])
        ms.append(t)
    generate = n / (statistics.median(ms[1:]) / 1000)
    text = LONG_TEXT[:config["block_size"]]
    ids = tab.evaluate("t => window.quill.encode(t)", text)
    forward = median_of(repeats, lambda: tab.evaluate(TIME_FORWARD, ids)) / 1000
    typed = median_of(repeats, lambda: tab.evaluate(TIME_TYPED, text)) / 1000
    tab.close()
    inline_tab = context.new_page()
    inline_tab.on("pageerror", lambda e: errors.append(str(e)))
    inline_tab.set_content("<h1>a notebook</h1>")
    filled, inline_ms = inline_tab.evaluate(TIME_INLINE, path.read_text(encoding="utf-8"))
    inline_tab.close()
    return {"load": load / 1000, "generate": generate, "prompt": len(prompt), "forward": forward,
            "context": len(ids), "typed": typed, "inline": inline_ms / 1000 if filled else None,
            "errors": errors}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "medium"], choices=list(MODELS))
    parser.add_argument("--weights", default="auto", help="visualize.py --weights for every page")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per figure, after one warm-up")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("QUILL_CHROMIUM", "/usr/bin/chromium")
    load_before, rows = os.getloadavg()[0], []
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(Path(folder) / "profile", executable_path=chromium,
                                                       headless=True, args=ARGS)
        version = context.browser.version if context.browser else "?"
        for name in args.presets:
            path = write_page(name, Path(folder), args.weights)
            html = path.read_text(encoding="utf-8")
            fmt = html.split('"format":"', 1)[1].split('"', 1)[0]
            size = len(html.encode("utf-8"))
            result = bench(path, context, args.repeats)
            target = TARGETS.get(name)
            config = GPTConfig(**{**asdict(PRESETS[name]), "vocab_size": 65, **MODELS[name]})
            params = GPT(config).num_params()
            inline = "failed" if result["inline"] is None else f"{result['inline']:.2f} s"
            rows.append(
                f"| {name} ({params / 1e6:.2f}M) | {fmt} | {size / 1e6:.2f} MB"
                + (f" (target ≤ {target / 1e6:.0f})" if target else "")
                + f" | {result['load']:.2f} s | {result['generate']:.0f} tok/s after {result['prompt']} "
                + f"tokens | {result['forward']:.2f} s for {result['context']} tokens"
                + f" | {result['typed']:.2f} s | {inline} |")
            if result["errors"]:
                print(f"{name}: JavaScript errors:", *result["errors"], sep="\n  ")
                return 1
        context.close()
    print(f"\nMachine: {cpu_name()}, {os.cpu_count()} cores, torch CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}; Chromium {version} headless, Playwright "
          f"{importlib.metadata.version('playwright')}, Python {platform.python_version()}; load average "
          f"(1 min) {load_before:.1f} before, {os.getloadavg()[0]:.1f} after\n")
    print("| model | weights | page | load | generate (200 tokens) | forward, every attention map | typed, "
          "every figure redrawn | inline (notebook) |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
