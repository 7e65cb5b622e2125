"""Torch utilities shared by the search loop and by retraining: the device, autocast, seeding
and RNG state (for bit-identical resume), and a model's loss and accuracy on a split.

Shapes: a split's batches are [B, 3, H, W] images and [B] labels (training.data.Batcher).
"""

from __future__ import annotations

import random

import numpy as np
import torch
import torch.nn.functional as F

from ray_nas.errors import SpecError
from ray_nas.training.data import Batcher


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SpecError(
            "search.device: cuda, but this machine has no CUDA device; use device: auto or cpu"
        )
    return torch.device(name)


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """`search.precision`: bf16 autocasts the forward (weights, alpha and grads stay fp32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def rng_state() -> dict:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    if s.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch, numpy and python; return the generator that drives data order and augmentation."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    return torch.Generator().manual_seed(seed)


@torch.no_grad()
def evaluate_split(
    model: torch.nn.Module,
    batcher: Batcher,
    batch_size: int,
    max_batches: int | None,
    weights: torch.Tensor | None = None,
):
    """(mean loss, accuracy %, last (x, y)) on the first batches of a split, eval mode, no
    augmentation; a supernet mixes with `weights` [E, K] when given (default softmax(alpha));
    a discrete network (retraining) takes none."""
    model.eval()
    n = len(batcher)
    starts = list(range(0, n, batch_size))[: max_batches or None]
    loss_sum, correct, count, last = 0.0, 0, 0, None
    for s in starts:
        x, y = batcher.get(torch.arange(s, min(s + batch_size, n)))
        logits = model(x) if weights is None else model(x, weights=weights)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        count += len(y)
        last = (x, y)
    model.train()
    return loss_sum / count, 100.0 * correct / count, last
