"""Decoding token ids into text as they arrive (generate.py prints each token as it is drawn), never printing
half a character: a byte-level BPE token can end in the middle of one.
"""


class StreamDecoder:
    """Turns token ids into text as they arrive, never printing half a character.

    A BPE token can end part-way through a multi-byte character; decoding it alone gives "\ufffd". So we hold
    back text that ends in "\ufffd" until the next ids complete the character (or flush() gives up on it).
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.pending = []  # ids since the last point where the decoded text ended on a whole character
        self.emitted = 0  # characters of decode(pending) already returned

    def push(self, ids: list[int]) -> str:
        """Take the next ids; return the new text that is certain."""
        if self.tokenizer.kind == "char":
            return self.tokenizer.decode(ids)  # every token is a whole character
        self.pending.extend(int(i) for i in ids)
        text = self.tokenizer.decode(self.pending)
        certain = text.rstrip("\ufffd")  # a cut-off character decodes to "\ufffd" at the very end
        new = certain[self.emitted :]
        if certain == text:  # ended on a whole character: later bytes decode independently of these
            self.pending, self.emitted = [], 0
        else:
            self.emitted = len(certain)
        return new

    def flush(self) -> str:
        """Return whatever was held back (with "\ufffd" for bytes that never became a whole character)."""
        text = self.tokenizer.decode(self.pending)[self.emitted :] if self.pending else ""
        self.pending, self.emitted = [], 0
        return text
