"""What every space's retraining shares (pure, no torch): the fields of one retraining run (the
columns of a retraining cache), its result, and a named recipe with field overrides."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ray_nas.digest import sha256_hex

#: the fields of one retraining run, the canonical columns of a retraining cache
RETRAIN_FIELDS: tuple[str, ...] = ("genotype_key", "genotype", "recipe", "recipe_key", "seed",
                                   "dataset", "test_acc", "params_m", "seconds")  # fmt: skip


@dataclass
class RetrainResult:
    """One retraining's outcome (Space.retrain)."""

    test_acc: float
    """accuracy in percent on the data set's test split after the last epoch"""
    params_m: float
    """parameters of the evaluation network in millions (auxiliary heads excluded)"""
    epochs: int
    seconds: float
    """wall seconds of this call (a resumed run counts only what it ran)"""
    train_loss: list[float]
    """mean training loss per epoch, from epoch 1 (empty where the space does not record it)"""
    digest: str
    """sha256 of the final weights: equal = bit-identical training"""


def named_recipe(recipes: Mapping[str, Any], name: str, overrides: Mapping[str, Any]):
    """recipes[name] with field overrides; ValueError names a bad name, field or value."""
    if name not in recipes:
        raise ValueError(f"unknown retrain recipe {name!r}; valid: {', '.join(recipes)}")
    base = recipes[name]
    fields = {f.name for f in dataclasses.fields(base)}
    bad = sorted(set(overrides) - fields)
    if bad:
        raise ValueError(
            f"retrain recipe: unknown key {bad[0]!r}; valid: {', '.join(sorted(fields))}"
        )
    for key, value in overrides.items():
        default = getattr(base, key)
        kind = float if isinstance(default, float) else int
        ok = isinstance(value, (int, float) if kind is float else int) and not isinstance(
            value, bool
        )
        if not (ok or (key == "steps_per_epoch" and value is None)) or (ok and value < 0):
            raise ValueError(
                f"retrain recipe {key}: expected a {'number' if kind is float else 'whole number'} >= 0, got {value!r}"
            )
    return dataclasses.replace(base, **overrides)


def state_digest(state_dict) -> str:
    """sha256 over a state_dict's tensors (names sorted): equal digests = bit-identical weights."""
    return sha256_hex(
        piece
        for name in sorted(state_dict)
        for piece in (name, np.ascontiguousarray(state_dict[name].detach().cpu().numpy()).tobytes())
    )
