"""Retraining: where no benchmark covers a data set (digits, fake, a new data set; every DARTS-space
search), each distinct selected arch is trained from scratch and scored on the data set's
held-out test split.

NAS-Bench-201 archs: the discrete NB201 network, cached in `{store}/{job}/retrain.parquet` by
(arch, dataset, settings). DARTS-space genotypes: NetworkCIFAR under a named recipe
(ray_nas.spaces.darts_train), once per seed, cached in `{store}/{job}/retrain_genotypes.parquet`
by (genotype key, recipe, seed, dataset), checkpointed every epoch under `{store}/{job}/retrain/`.
A rerun retrains nothing already cached.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from ray_nas import trajectory
from ray_nas.spaces.darts_train import RECIPES
from ray_nas.spec import GENOTYPE_RETRAIN_FIELDS, JobSpec, resolve_search, to_dict

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
    from ray_nas.spaces.nb201_supernet import DiscreteNet

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
    for k in GENOTYPE_RETRAIN_FIELDS:  # the NB201 cache key predates them
        settings.pop(k)
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


# ------------------------------------------------------------------------------------------
# DARTS-space genotypes: NetworkCIFAR under a named recipe, per seed, checkpointed on the store

GENOTYPE_CACHE_COLUMNS = ["genotype_key", "genotype", "recipe", "recipe_key", "seed", "dataset",
                          "test_acc", "params_m", "seconds"]  # fmt: skip


def retrain_genotype_task(
    genotype: str, recipe_name: str, overrides: dict, dataset: str, data_root: str, seed: int,
    checkpoint_path: str,
) -> tuple[float, float, float]:  # fmt: skip
    """One retraining (a Ray task on the cluster): (test accuracy %, params M, seconds).

    Checkpointed every epoch at `checkpoint_path` on the store; a rerun (Ray retries a task
    whose node was lost) resumes from the last epoch, bit-identically.
    """
    from ray_nas.search import resolve_device
    from ray_nas.spaces.darts_train import recipe, retrain
    from ray_nas.trial import FileCheckpoint

    rec = recipe(recipe_name, **overrides)
    device = str(resolve_device("auto"))
    res = retrain(genotype, rec, dataset, data_root, seed, FileCheckpoint(checkpoint_path), device)
    return res.test_acc, res.params_m, res.seconds


def retrain_genotypes(
    spec: JobSpec,
    sel: pd.DataFrame,
    dataset_of_run: dict[str, str],
    retrain_map: Callable | None = None,
    log: Callable[[str], None] = print,
) -> pd.DataFrame:
    """Per distinct (genotype, dataset) of `sel`: mean and std over `evaluate.retrain.seeds` of
    the retrained test accuracy, and the parameter count. Columns: arch, dataset, retrain_acc,
    retrain_acc_std, params_m. Cached by (genotype key, recipe, seed, dataset) in
    `{job}/retrain_genotypes.parquet`; checkpoints under `{job}/retrain/`.
    """
    from ray_nas.spaces import get_space
    from ray_nas.spaces.darts_train import recipe

    cfg = spec.evaluate.retrain
    rec = recipe(cfg.recipe, **cfg.overrides)
    if cfg.steps_per_epoch and rec.steps_per_epoch is None:
        rec = dataclasses.replace(rec, steps_per_epoch=cfg.steps_per_epoch)
    overrides = {
        k: v for k, v in dataclasses.asdict(rec).items() if v != getattr(RECIPES[cfg.recipe], k)
    }
    space = get_space("darts")
    data_root = resolve_search(spec.search).data_root
    cache_path = f"{spec.job_dir}/retrain_genotypes.parquet"
    cache = trajectory.read_frame(cache_path) if trajectory.exists(cache_path) else None
    known = {} if cache is None else {
        (r.genotype_key, r.recipe_key, int(r.seed), r.dataset): (r.test_acc, r.params_m)
        for r in cache.itertuples()
    }  # fmt: skip
    wanted = sorted({(a, dataset_of_run[r]) for a, r in zip(sel["arch"], sel["run_id"])})
    keyed = {(a, d): space.genotype_key(a) for a, d in wanted}
    # one run per (genotype key, dataset, seed): two texts of one architecture train once
    text_of = {(keyed[(a, d)], d): a for a, d in wanted}
    jobs = [(k, a, d, s) for (k, d), a in sorted(text_of.items()) for s in cfg.seeds]
    todo = [(k, a, d, s) for k, a, d, s in jobs if (k, rec.key(), s, d) not in known]
    log(f"retrain: {len({j[0] for j in jobs})} distinct genotypes x {len(cfg.seeds)} seeds, "
        f"{len(jobs) - len(todo)} cached, {len(todo)} to train (recipe {cfg.recipe}, {rec.epochs} epochs)")  # fmt: skip
    if todo:
        args = [
            (a, cfg.recipe, overrides, d, data_root, s,
             f"{spec.job_dir}/retrain/{_digest(k, rec.key(), s, d)}.pt")
            for k, a, d, s in todo
        ]  # fmt: skip
        t0 = time.perf_counter()
        if retrain_map is not None:
            results = retrain_map(retrain_genotype_task, args, cpu=cfg.cpu, gpu=cfg.gpu)
        else:
            results = [retrain_genotype_task(*a) for a in args]
        new = pd.DataFrame(
            [(k, a, cfg.recipe, rec.key(), s, d, acc, pm, sec)
             for (k, a, d, s), (acc, pm, sec) in zip(todo, results)],
            columns=GENOTYPE_CACHE_COLUMNS,
        )  # fmt: skip
        cache = new if cache is None else pd.concat([cache, new], ignore_index=True)
        trajectory.write_frame(cache, cache_path)
        known.update(
            {(k, rec.key(), s, d): (acc, pm) for (k, _a, d, s), (acc, pm, _) in zip(todo, results)}
        )
        log(f"retrain: {len(todo)} runs in {time.perf_counter() - t0:.1f}s, cached in {cache_path}")
    rows = []
    for a, d in wanted:
        got = [known[(keyed[(a, d)], rec.key(), s, d)] for s in cfg.seeds]
        accs = np.array([g[0] for g in got])
        std = float(accs.std(ddof=1)) if len(accs) > 1 else float("nan")
        rows.append((a, d, float(accs.mean()), std, float(got[0][1])))
    return pd.DataFrame(
        rows, columns=["arch", "dataset", "retrain_acc", "retrain_acc_std", "params_m"]
    )


def _digest(*parts) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:16]


def retrain_selected(
    spec: JobSpec, sel: pd.DataFrame, configs: dict[str, dict], retrain_map: Callable | None = None,
    log: Callable[[str], None] = print,
) -> pd.DataFrame:  # fmt: skip
    """`sel` with `retrain_acc` (and, for DARTS-space genotypes, `retrain_acc_std` and
    `params_m`) filled from the cache or by retraining; configs: run_id -> resolved search config."""
    dataset = {r: c.get("dataset") for r, c in configs.items()}
    is_darts = sel["run_id"].map(lambda r: configs[r].get("space", "nb201") == "darts")
    sel = sel.copy()
    sel["retrain_acc"] = np.nan
    if (~is_darts).any():
        part = sel[~is_darts]
        accs = retrain_archs(spec, part, dataset, retrain_map=retrain_map, log=log)
        sel.loc[~is_darts, "retrain_acc"] = [
            accs.get((a, dataset[r])) for a, r in zip(part["arch"], part["run_id"])
        ]
    if is_darts.any():
        part = sel[is_darts]
        res = retrain_genotypes(spec, part, dataset, retrain_map=retrain_map, log=log)
        got = res.set_index(["arch", "dataset"])
        idx = list(zip(part["arch"], part["run_id"].map(dataset)))
        for col in ("retrain_acc", "retrain_acc_std", "params_m"):
            sel.loc[is_darts, col] = got.loc[idx, col].to_numpy()
    return sel
