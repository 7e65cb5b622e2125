"""The errors every layer may raise, and the small text helpers their messages share.

The lowest layer: imports nothing of ray_nas. Each error's message is one line that names the
key, file or value and what would be valid; the command line prints it and exits 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SpecError(ValueError):
    """A job spec problem; the message is one line naming the key and what would be valid."""


class StoreError(OSError):
    """A trial could not write its store (the message names the path pyarrow reported)."""


class CheckpointError(RuntimeError):
    """The checkpoint file exists but cannot be read (truncated, not a checkpoint)."""


class CriterionError(ValueError):
    """A criterion broke the shared rules or raised; one line naming the function."""


class WorkerKilled(RuntimeError):
    """A Ray worker (a trial or a retraining task) was killed: by the kernel's OOM killer, Ray's
    memory monitor or a lost node; the message names it, the node and what to change."""


def first_line(e: BaseException, limit: int | None = None) -> str:
    """An exception's message as one line: its first non-blank line, whitespace runs collapsed,
    cut to `limit` characters; an OSError that names a file (other than not-found, whose message
    already names it) as `file: strerror`; the exception's type name when the message is empty."""
    if isinstance(e, OSError) and not isinstance(e, FileNotFoundError) and e.filename:
        text = f"{e.filename}: {e.strerror or e}"
    else:
        text = str(e)
    line = next((" ".join(s.split()) for s in text.splitlines() if s.strip()), "")
    return (line or type(e).__name__)[:limit]


def did_you_mean(word: str, valid: Iterable[str], n: int = 1, list_valid: bool = False) -> str:
    """`; did you mean 'x'?` (up to `n` close matches of `word` among `valid`, joined by 'or');
    with no close match, `; valid: a, b, ...` when `list_valid`, else the empty string."""
    valid = list(valid)
    close = difflib.get_close_matches(str(word), valid, n=n)
    if close:
        return f"; did you mean {' or '.join(repr(c) for c in close)}?"
    return f"; valid: {', '.join(valid)}" if list_valid else ""
