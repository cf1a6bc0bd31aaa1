"""The text a run trains on, as token ids: where the default corpus lives, the train/val split, and a text of
up to IN_MEMORY_BYTES read whole and encoded one token per character, as the workshop does it (nanoGPT's
prepare.py the same way). Larger texts and BPE stream through the token cache instead (extras/dataset.py).
"""

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from extras.tokenizer import CharTokenizer, name_chars

# The default corpus: train.py downloads it here on first use (extras/download.py); evaluate.py and
# bench.py read it.
DEFAULT_DATA = Path(__file__).resolve().parent.parent / "data" / "tinyshakespeare.txt"
TRAIN_FRACTION = 0.9  # the first 90% of the characters train, the rest validate (as nanoGPT splits)
# Texts up to this size are read whole (a few times their size in memory, for a moment); larger ones stream.
IN_MEMORY_BYTES = 32 << 20


class DataError(ValueError):
    """A problem with the data the user can fix; the message is one line naming the file and the fix."""


@dataclass
class TokenData:
    """The encoded text, split, and where it came from."""

    train: np.ndarray  # the train split's token ids (a read-only np.memmap when from the token cache)
    val: np.ndarray  # the val split's token ids
    tokenizer: object  # a CharTokenizer, or a BPETokenizer (extras/bpe.py)
    n_chars: int  # characters in the whole text
    n_train_chars: int  # characters in the train split (the first 90%)
    path: Path  # the .bin cache file, or the text itself when it was read whole
    sha256: str  # of the text file's bytes: checkpoints keep it, so --resume knows the text it trained on
    from_cache: bool  # True when an existing cache was reused
    seconds: float  # wall time the reading and encoding took


def read_text(path: Path, tokenizer: CharTokenizer | None = None) -> TokenData:
    """Read the text file at path whole and encode it one token per character: with tokenizer (a
    checkpoint's), or with the text's own characters, sorted, as the vocabulary. The first TRAIN_FRACTION
    trains. (A path that is not a file goes to extras/dataset.py, whose check_text_file says what it is.)"""
    t0 = time.perf_counter()
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"data file {path} is not UTF-8 text (bad byte at offset {e.start}); "
                        "pass a UTF-8 text file with --data") from None
    except OSError as e:
        raise DataError(f"cannot read data file {path}: {e.strerror}") from None
    if not raw:
        raise DataError(f"data file {path} is empty; pass a text file with --data")
    text = text.replace("\r\n", "\n").replace("\r", "\n")  # newlines as open() reads them in text mode
    tokenizer = tokenizer or CharTokenizer.from_text(text)
    missing = tokenizer.unknown(text)
    if missing:
        more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
        raise DataError(f"{path}: characters not in the vocabulary: {name_chars(missing[:20])}{more}")
    ids = tokenizer.encode_fast(text)  # (N,) token ids, one per character
    n_train = int(TRAIN_FRACTION * len(ids))
    return TokenData(train=ids[:n_train], val=ids[n_train:], tokenizer=tokenizer, n_chars=len(ids),
                     n_train_chars=n_train, path=path, sha256=hashlib.sha256(raw).hexdigest(),
                     from_cache=False, seconds=time.perf_counter() - t0)
