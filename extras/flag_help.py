"""The --help text of the flags made from dataclass fields (train.py's TrainConfig, extras/run.py's
RunControls, model.py's GPTConfig): the comment beside each field, and its default. So a setting is explained
once, where a learner reads it. Imported only when --help is asked for.
"""

import functools
import inspect
import re
from dataclasses import fields

from model import PRESETS, GPTConfig


@functools.cache  # one read of each dataclass's source, not one per flag
def field_comments(cls) -> dict[str, str]:
    """{field name: the comment that ends its line} for the dataclass cls, read from its source file."""
    names, comments = {f.name for f in fields(cls)}, {}
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):  # no source file to read (a frozen or interactive session): no comments
        return comments
    for line in source.splitlines():
        field = re.match(r"\s+(\w+): [^#]+#\s*(.+)", line)  # `    name: type = default  # the comment`
        if field and field[1] in names:
            comments.setdefault(field[1], field[2])
    return comments


def help_text(cls, field, comment: str) -> str:
    """A field's comment and its default: the preset's for the sizes the presets set; for None, what the
    comment says None means ("...; None: out_dir/cache"); the value otherwise."""
    if cls is GPTConfig and any(getattr(p, field.name) != field.default for p in PRESETS.values()):
        return f"{comment} (default: from the preset)"
    if field.default is None:
        comment, _, default = comment.partition("; None: ")
        return f"{comment} (default: {default})" if default else comment
    return f"{comment} (default: {field.default})"


def describe_field_flags(actions) -> None:
    """Set the help of every argparse action made from a dataclass field (marked .field_of): its comment and
    its default."""
    for action in actions:
        cls = getattr(action, "field_of", None)
        if cls is None:
            continue
        field = next(f for f in fields(cls) if f.name == action.dest)
        text = help_text(cls, field, field_comments(cls).get(field.name, field.name))
        action.help = text.replace("%", "%%")  # argparse fills in %(name)s in help text
