"""Remake docs/page.png: visualize.py's page, from a real checkpoint, photographed by headless Chromium with
its figures live: a prompt typed into the page, which its JavaScript model reads.

    .venv/bin/python train.py --out_dir out/default        # the CPU default run (about five minutes)
    .venv/bin/python docs/page_screenshot.py               # out/default/pictures/index.html -> docs/page.png
    .venv/bin/python docs/page_screenshot.py --checkpoint out/other/best.pt --out docs/other.png

Drives Debian's Chromium (or QUILL_CHROMIUM) with Playwright, as tests/test_browser.py does: types PROMPT
into figure 1, puts the query on one of its tokens, waits for the writer, and prints the browser's and
Playwright's versions and the page's size. The picture is the whole page at 1280 pixels wide, in 128
colours, so the PNG stays small.
"""

import argparse
import importlib.metadata
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?"  # typed into the page, not visualize.py's
QUERY = 17  # the query slider on "R" of the second "Romeo": what each layer predicts after it

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="out/default/best.pt")
    parser.add_argument("--out", default="docs/page.png")
    args = parser.parse_args()
    from PIL import Image  # matplotlib's dependency, so already installed
    from playwright.sync_api import sync_playwright

    pictures = Path(args.checkpoint).parent / "pictures"
    made = subprocess.run([sys.executable, str(ROOT / "visualize.py"), "--checkpoint", args.checkpoint,
                           "--out_dir", str(pictures), "--device", "cpu"])
    if made.returncode != 0:
        return made.returncode
    page_path = pictures / "index.html"
    chromium = os.environ.get("QUILL_CHROMIUM", "/usr/bin/chromium")
    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        context = p.chromium.launch_persistent_context(profile, executable_path=chromium, headless=True,
                                                       args=ARGS, viewport={"width": 1280, "height": 900})
        tab = context.new_page()
        errors = []
        tab.on("pageerror", lambda e: errors.append(str(e)))
        tab.goto(page_path.resolve().as_uri())
        tab.locator('[data-q="typed"]').fill(PROMPT)  # every figure runs the model again on this text
        tab.wait_for_function("""prompt => document.querySelector('.quill-page').dataset.writer === 'done'
            && document.querySelector('[data-q="writer-live"]').textContent.startsWith(prompt)""", arg=PROMPT)
        tab.locator('[data-q="query"]').fill(str(QUERY))
        tab.locator('[data-q="layer"]').select_option("1")
        tab.locator('[data-q="writer-step"]').fill("60")  # the writer part-way, its candidates at that step
        tab.locator('[data-q="params"] .q-row').nth(3).hover()  # block 0's attention: its tensors and shapes
        shot = Path(profile) / "page.png"
        tab.screenshot(path=str(shot), full_page=True)
        version = context.browser.version if context.browser else "?"
        context.close()
        if errors:
            print("JavaScript errors:", *errors, sep="\n  ")
            return 1
        Image.open(shot).convert("RGB").quantize(colors=128).save(args.out, optimize=True)
    playwright = importlib.metadata.version("playwright")
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1024:.0f} KiB) from {page_path} "
          f"({page_path.stat().st_size:,} bytes); Chromium {version}, Playwright {playwright}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
