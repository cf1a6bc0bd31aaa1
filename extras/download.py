"""Downloading Tiny Shakespeare, the default corpus, on first use: train.py imports this only when
data/tinyshakespeare.txt is missing.
"""

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

from extras.cli import EXIT_FAILED, CLIError
from extras.files import write_atomically
from extras.text import DataError

DATA_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
DATA_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


def download_corpus(path: Path) -> None:
    """Download Tiny Shakespeare to path, saying so; a failure is one line (a CLIError) saying what to do."""
    print(f"downloading Tiny Shakespeare to {path} ...")
    try:
        download(DATA_URL, path, DATA_SHA256)
    except DataError as e:
        raise CLIError(str(e), EXIT_FAILED) from None


def download(url: str, path: Path, sha256: str, timeout: float = 30.0) -> None:
    """Fetch url into path, check its sha256, and only then move it into place (no half-written file ever).
    A failure is a DataError naming what to do instead."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            payload = response.read()
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DataError(f"could not download the corpus from {url} ({reason}); "
                        f"put Tiny Shakespeare at {path} or pass --data PATH") from None
    digest = hashlib.sha256(payload).hexdigest()
    if digest != sha256:
        raise DataError(f"the file from {url} has sha256 {digest}, expected {sha256}; nothing was saved. "
                        f"Put the right file at {path} or pass --data PATH")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda f: f.write(payload))
    except OSError as e:
        raise DataError(f"could not save the corpus to {path} ({e.strerror or e}); put Tiny Shakespeare "
                        "there yourself or pass --data PATH") from None
