"""The errors every layer may raise, and the small text helpers their messages share.

The lowest layer: imports nothing of ray_nas. Each error's message is one line that names the
key, file or value and what would be valid; the command line prints it and exits 2.
"""

from __future__ import annotations


class SpecError(ValueError):
    """A job spec problem; the message is one line naming the key and what would be valid."""


class StoreError(OSError):
    """A trial could not write its store (the message names the path pyarrow reported)."""


class CheckpointError(RuntimeError):
    """The checkpoint file exists but cannot be read (truncated, not a checkpoint)."""


class CriterionError(ValueError):
    """A criterion broke the shared rules or raised; one line naming the function."""
