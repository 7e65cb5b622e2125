"""Retraining: where no benchmark covers a data set (digits, fake, a new data set), each distinct
selected arch is trained from scratch as a discrete NAS-Bench-201 network and scored on the data
set's held-out test split. Results are cached in `{store}/{job}/retrain.parquet`, keyed by
(arch, dataset, settings), so a rerun retrains nothing.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable

import pandas as pd

from ray_nas import trajectory
from ray_nas.spec import JobSpec, resolve_search, to_dict

CACHE_COLUMNS = ["arch", "dataset", "settings", "test_acc", "seconds"]


def retrain_one(arch: str, dataset: str, settings: dict, data_root: str) -> tuple[float, float]:
    """Train `arch` from scratch on the data set's training split; (test accuracy %, seconds).

    SGD (momentum 0.9, nesterov, weight decay 5e-4), cosine lr over `epochs`, seed 0,
    the same augmentation as the search.
    """
    import torch
    import torch.nn.functional as F

    from ray_nas.data import Batcher, load_dataset
    from ray_nas.search import evaluate_split, seed_everything
    from ray_nas.supernet import DiscreteNet

    t0 = time.perf_counter()
    gen = seed_everything(0)
    ds = load_dataset(dataset, data_root)
    net = DiscreteNet(arch, settings["channels"], settings["cells"], ds.num_classes)
    train, test = Batcher(ds.train, ds.name), Batcher(ds.test, ds.name)
    opt = torch.optim.SGD(
        net.parameters(), lr=settings["lr"], momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    bs, epochs = settings["batch_size"], settings["epochs"]
    steps = math.ceil(len(train) / bs)
    if settings.get("steps_per_epoch"):
        steps = min(steps, settings["steps_per_epoch"])
    for epoch in range(epochs):
        for g in opt.param_groups:
            g["lr"] = settings["lr"] * (1 + math.cos(math.pi * epoch / epochs)) / 2
        order = torch.randperm(len(train), generator=gen)
        net.train()
        for step in range(steps):
            x, y = train.get(order[step * bs : (step + 1) * bs], gen)
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), y).backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
    _, acc, _ = evaluate_split(net, test, bs, None)
    return acc, time.perf_counter() - t0


def retrain_archs(
    spec: JobSpec,
    sel: pd.DataFrame,
    dataset_of_run: dict[str, str],
    retrain_map: Callable | None = None,
    log: Callable[[str], None] = print,
) -> dict[tuple[str, str], float]:
    """{(arch, dataset): test accuracy} for every selected arch, from the cache or by retraining.

    `retrain_map(fn, list_of_arg_tuples) -> list of results` runs the work elsewhere (Ray tasks);
    None runs it in this process.
    """
    settings = to_dict(spec.evaluate.retrain)
    key = json.dumps(settings, sort_keys=True)
    data_root = resolve_search(spec.search).data_root
    cache_path = f"{spec.job_dir}/retrain.parquet"
    cache = (
        trajectory.read_frame(cache_path)
        if trajectory.exists(cache_path)
        else pd.DataFrame(columns=CACHE_COLUMNS)
    )
    known = {(r.arch, r.dataset): r.test_acc for r in cache.itertuples() if r.settings == key}
    wanted = sorted({(a, dataset_of_run[r]) for a, r in zip(sel["arch"], sel["run_id"])})
    todo = [w for w in wanted if w not in known]
    log(f"retrain: {len(wanted)} distinct archs, {len(wanted) - len(todo)} cached, {len(todo)} to train "
        f"({settings['epochs']} epochs each)")  # fmt: skip
    if todo:
        args = [(arch, ds, settings, data_root) for arch, ds in todo]
        t0 = time.perf_counter()
        if retrain_map is not None:
            results = retrain_map(retrain_one, args)
        else:
            results = []
            for i, a in enumerate(args, 1):
                results.append(retrain_one(*a))
                log(f"  retrained {i}/{len(args)}: {results[-1][0]:.2f}% in {results[-1][1]:.1f}s")
        new = pd.DataFrame(
            [(arch, ds, key, acc, sec) for (arch, ds), (acc, sec) in zip(todo, results)],
            columns=CACHE_COLUMNS,
        )
        cache = pd.concat([cache, new], ignore_index=True) if len(cache) else new
        trajectory.write_frame(cache, cache_path)
        known.update({(a, d): acc for (a, d), (acc, _) in zip(todo, results)})
        log(
            f"retrain: {len(todo)} archs in {time.perf_counter() - t0:.1f}s, cached in {cache_path}"
        )
    return known
