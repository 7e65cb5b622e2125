"""Stable digests: the sha256 behind run_ids, retrain cache keys and weight checks.

The lowest layer (standard library only). A digest is only as stable as the text it hashes, so
each caller keeps its own serialisation; `canonical_json` is the one the run_id uses.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: equal plain data gives equal text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def sha256_hex(data: str | bytes | Iterable[str | bytes], length: int | None = None) -> str:
    """Hex sha256 of `data` (text as UTF-8; an iterable hashed piece by piece, i.e. as the
    concatenation of its pieces), cut to its first `length` hex digits (64 when None)."""
    h = hashlib.sha256()
    for piece in [data] if isinstance(data, (str, bytes)) else data:
        h.update(piece.encode() if isinstance(piece, str) else piece)
    return h.hexdigest()[:length]
