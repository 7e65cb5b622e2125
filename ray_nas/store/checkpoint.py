"""A trial's (or a retraining's) checkpoint: one file on the store, written atomically.

torch is imported on use, so the store layer stays cheap to import.
"""

from __future__ import annotations

import io

from ray_nas.errors import CheckpointError, first_line
from ray_nas.store import fs


class FileCheckpoint:
    """The trial's checkpoint as one file on the store (torch.save bytes, written atomically)."""

    def __init__(self, path: str, run_id: str | None = None):
        """run_id: the trial that owns the file; save() records it in the state (`run_id`), so
        that a checkpoint of another trial found at this path is told apart (`owner`)."""
        self.path = path
        self.run_id = run_id
        self._cached: dict | None = None
        self._loaded = False

    def load(self) -> dict | None:
        """The saved state, None when there is no file; CheckpointError when it is unreadable."""
        if not self._loaded:
            import torch

            data = fs.read_bytes(self.path)
            try:
                # our own file, written by save(): it holds numpy/python RNG states, hence weights_only=False
                state = None if data is None else torch.load(io.BytesIO(data), weights_only=False)
                if state is not None and not isinstance(state.get("epoch"), int):
                    raise ValueError("no epoch in it")
            except Exception as e:  # noqa: BLE001 - truncated or foreign bytes
                raise CheckpointError(f"{type(e).__name__}: {first_line(e, 200)}") from None
            self._cached, self._loaded = state, True
        return self._cached

    def owner(self) -> str | None:
        """The run_id the loaded checkpoint was saved by (None: no file, or an older file)."""
        state = self.load()
        return state.get("run_id") if state else None

    def forget(self) -> None:
        """Act as if there were no checkpoint (after an unreadable one was set aside)."""
        self._cached, self._loaded = None, True

    def save(self, state: dict) -> None:
        import torch

        if self.run_id is not None:
            state = {**state, "run_id": self.run_id}
        buf = io.BytesIO()
        torch.save(state, buf)
        fs.write_bytes(self.path, buf.getvalue())
