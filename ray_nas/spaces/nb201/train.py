"""Retraining a NAS-Bench-201 arch from scratch (the discrete network, DiscreteNet).

One recipe (`nb201`), set by evaluate.retrain's own keys epochs, channels, cells, batch_size, lr
and steps_per_epoch: SGD (momentum 0.9, nesterov, weight decay 5e-4), cosine lr over `epochs`
(stepped per epoch), grad clip 5, the search's augmentation (crop, flip), seed 0. Not
checkpointed: these runs take minutes. Pure at import (torch is imported by `retrain`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from ray_nas.spaces.recipes import RetrainResult, state_digest


@dataclass(frozen=True)
class NB201Recipe:
    """NAS-Bench-201 retraining: the discrete network at C=`channels`, N=`cells` per stage."""

    epochs: int = 10
    channels: int = 16
    cells: int = 5
    batch_size: int = 64
    lr: float = 0.1
    """initial SGD lr, cosine to 0 over `epochs`"""
    steps_per_epoch: int | None = None
    """cap on training batches per epoch (the test split is scored whole)"""

    def key(self) -> str:
        """The cache key's recipe part: the fields as sorted JSON, exactly the `settings` string
        retrain.parquet has held since before spaces were units (old caches stay valid)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


RECIPES: dict[str, NB201Recipe] = {"nb201": NB201Recipe()}


def recipe_of(cfg) -> NB201Recipe:
    """The recipe of an evaluate.retrain config (spec.RetrainConfig): its epochs, channels,
    cells, batch_size, lr and steps_per_epoch, values as written (the key keeps their types)."""
    return NB201Recipe(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(NB201Recipe)})


def build_network(arch: str, rec: NB201Recipe, num_classes: int):
    """DiscreteNet of the arch string at the recipe's size."""
    from ray_nas.spaces.nb201.supernet import DiscreteNet  # torch: imported on use

    return DiscreteNet(arch, rec.channels, rec.cells, num_classes)


def retrain(
    arch: str, rec: NB201Recipe, dataset: str, data_root: str = "data", seed: int = 0,
    device: str = "cpu", on_epoch: Callable[[int], None] | None = None,
) -> RetrainResult:  # fmt: skip
    """Train `arch`'s DiscreteNet from scratch on the data set's training split; score it on its
    test split (RetrainResult: accuracy %, params M, seconds, mean loss per epoch)."""
    import torch
    import torch.nn.functional as F

    # torch: imported on use (the space's pure part is read without it)
    from ray_nas.training.data import Batcher, load_dataset
    from ray_nas.training.runtime import evaluate_split, seed_everything

    t0 = time.perf_counter()
    gen = seed_everything(seed)
    ds = load_dataset(dataset, data_root)
    net = build_network(arch, rec, ds.num_classes).to(device)
    train, test = Batcher(ds.train, ds.name, device), Batcher(ds.test, ds.name, device)
    opt = torch.optim.SGD(
        net.parameters(), lr=rec.lr, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    bs, epochs = rec.batch_size, rec.epochs
    steps = math.ceil(len(train) / bs)
    if rec.steps_per_epoch:
        steps = min(steps, rec.steps_per_epoch)
    losses: list[float] = []
    for epoch in range(epochs):
        for g in opt.param_groups:
            g["lr"] = rec.lr * (1 + math.cos(math.pi * epoch / epochs)) / 2
        order = torch.randperm(len(train), generator=gen)
        net.train()
        total = 0.0
        for step in range(steps):
            x, y = train.get(order[step * bs : (step + 1) * bs], gen)
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(net(x), y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
            total += loss.item()
        losses.append(total / steps)
        if on_epoch:
            on_epoch(epoch + 1)
    _, acc, _ = evaluate_split(net, test, bs, None)
    params_m = sum(p.numel() for p in net.parameters()) / 1e6
    return RetrainResult(acc, params_m, epochs, time.perf_counter() - t0, losses,
                         state_digest(net.state_dict()))  # fmt: skip
