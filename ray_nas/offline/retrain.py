"""Retraining: where no benchmark covers a data set (digits, fake, a new data set; every DARTS-space
search), each distinct selected genotype is trained from scratch and scored on the data set's
held-out test split.

This module asks the trial's search space (ray_nas.spaces.base.Space, its evaluation part) for
everything space-specific: the recipe that `evaluate.retrain` names (`retrain_recipe`), the seeds
(`retrain_seeds`), the genotype key, the training itself (`retrain`: evaluation network, loop,
checkpoints) and the cache's file and columns (`retrain_cache`, `retrain_columns`). Per space,
one run per (genotype key, recipe key, seed, data set), cached in `{store}/{job}/<retrain_cache>`
(nb201: retrain.parquet keyed by (arch, dataset, settings); darts: retrain_genotypes.parquet),
checkpointed under `{store}/{job}/retrain/` where the space checkpoints. A rerun retrains nothing
already cached; each run is one Ray task under `retrain_map`.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from ray_nas import store
from ray_nas.config import JobSpec, resolve_search
from ray_nas.digest import sha256_hex
from ray_nas.spaces import get_space, name_of
from ray_nas.spaces.base import Space
from ray_nas.spaces.recipes import RETRAIN_FIELDS

# ------------------------------------------------------------------------------------------
# where the retraining runs: the address choice (no Ray import)


def ray_address_file() -> Path:
    """Where `ray start` records the cluster it started on this node (Ray's own file:
    `$RAY_TMPDIR/ray/ray_current_cluster`, else `/tmp/ray/ray_current_cluster`)."""
    return Path(os.environ.get("RAY_TMPDIR") or "/tmp", "ray", "ray_current_cluster")


#: the GCS call that tells a Ray cluster from any other server on a port (Ray's own RPC, cheap)
GCS_PROBE = "/ray.rpc.NodeInfoGcsService/GetClusterId"


def answers(address: str, timeout: float = 2.0) -> bool:
    """True when a Ray cluster's GCS answers at `address` (host:port, or a URL of one): a port
    that merely accepts connections (another service, a proxy that takes every connection) is
    not one, and a driver sent there would retry for minutes. Asks the GCS its cluster id over
    gRPC (grpcio comes with Ray), no proxy; a GCS that wants a token counts (it answered)."""
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return False
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError:
        return False
    import grpc

    channel = grpc.insecure_channel(hostport, options=[("grpc.enable_http_proxy", 0)])
    try:
        channel.unary_unary(GCS_PROBE)(b"", timeout=timeout)
    except grpc.RpcError as e:
        return e.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        channel.close()
    return True


def local_cluster_address(timeout: float = 2.0) -> str | None:
    """The GCS address of the Ray cluster running on this node (what `ray.init(address="auto")`
    connects to), or None when none was started here or it no longer answers."""
    try:
        address = ray_address_file().read_text().strip()
    except OSError:
        return None
    return address if address and answers(address, timeout) else None


def retrain_address() -> tuple[str | None, str]:
    """(address, why) of the Ray cluster retraining runs on: RAY_ADDRESS when set, else the
    cluster running on this node; (None, why) when there is none (retraining runs in this
    process, one run after another)."""
    env = os.environ.get("RAY_ADDRESS")
    if env:
        return env, "RAY_ADDRESS"
    local = local_cluster_address()
    if local:
        return local, f"running on this node, {ray_address_file()}"
    return None, "no RAY_ADDRESS and no Ray cluster running on this node"


#: defaults of the RETRAIN_FIELDS a space's cache does not store
_ABSENT = {"seed": 0, "recipe": "", "params_m": float("nan")}


def retrain_task(
    space_name: str, genotype: str, rec, dataset: str, data_root: str, seed: int,
    checkpoint_path: str,
) -> tuple[float, float, float]:  # fmt: skip
    """One retraining (a Ray task on the cluster): (test accuracy %, params M, seconds).

    The space checkpoints at `checkpoint_path` on the store every epoch where it supports it; a
    rerun (Ray retries a task whose node was lost) resumes from the last epoch, bit-identically.
    """
    from ray_nas.search.faults import maybe_pause
    from ray_nas.store.checkpoint import FileCheckpoint
    from ray_nas.training.runtime import resolve_device

    device = str(resolve_device("auto"))
    res = get_space(space_name).retrain(
        genotype, rec, dataset, data_root, seed, FileCheckpoint(checkpoint_path), device,
        on_epoch=lambda epoch: maybe_pause(epoch, print),
    )  # fmt: skip
    return res.test_acc, res.params_m, res.seconds


def read_cache(space: Space, path: str) -> pd.DataFrame | None:
    """The space's retraining cache with every RETRAIN_FIELDS column (absent ones filled), or None."""
    if not store.exists(path):
        return None
    cols = _columns(space)
    df = store.read_frame(path).rename(columns={v: k for k, v in cols.items()})
    for f in RETRAIN_FIELDS:
        if f not in df:
            df[f] = df["genotype_key"] if f == "genotype" else _ABSENT[f]
    return df


def _columns(space: Space) -> dict[str, str]:
    return dict(space.retrain_columns or {f: f for f in RETRAIN_FIELDS})


def retrain_space(
    spec: JobSpec,
    space: Space,
    sel: pd.DataFrame,
    dataset_of_run: dict[str, str],
    retrain_map: Callable | None = None,
    log: Callable[[str], None] = print,
) -> pd.DataFrame:
    """Per distinct (genotype, dataset) of `sel` (selections of `space`'s trials): the mean over
    the space's seeds of the retrained test accuracy, its std (NaN for one seed) and the
    parameter count. Columns: arch, dataset, retrain_acc, retrain_acc_std, params_m."""
    cfg = spec.evaluate.retrain
    if not space.recipes:
        raise ValueError(
            f"evaluate.retrain: the {space.name} space cannot retrain its genotypes (no recipes); "
            "set evaluate.benchmark to a table that scores them, or evaluate.retrain: null"
        )
    (name, rec), seeds = space.retrain_recipe(cfg), space.retrain_seeds(cfg)
    data_root = resolve_search(spec.search).data_root
    cache_path = f"{spec.job_dir}/{space.retrain_cache or f'retrain_{space.name}.parquet'}"
    cache = read_cache(space, cache_path)
    known = {} if cache is None else {
        (r.genotype_key, r.recipe_key, int(r.seed), r.dataset): (r.test_acc, r.params_m)
        for r in cache.itertuples()
    }  # fmt: skip
    wanted = sorted({(a, dataset_of_run[r]) for a, r in zip(sel["arch"], sel["run_id"])})
    keyed = {(a, d): space.genotype_key(a) for a, d in wanted}
    # one run per (genotype key, dataset, seed): two texts of one architecture train once
    text_of = {(keyed[(a, d)], d): a for a, d in wanted}
    runs = [(k, a, d, s) for (k, d), a in sorted(text_of.items()) for s in seeds]
    todo = [(k, a, d, s) for k, a, d, s in runs if (k, rec.key(), s, d) not in known]
    log(f"retrain ({space.name}): {len({r[0] for r in runs})} distinct genotypes x {len(seeds)} seeds, "
        f"{len(runs) - len(todo)} cached, {len(todo)} to train (recipe {name}, {rec.epochs} epochs)")  # fmt: skip
    if todo:
        results = _train(spec, space, rec, todo, data_root, retrain_map, log)
        new = pd.DataFrame(
            [(k, a, name, rec.key(), s, d, acc, pm, sec)
             for (k, a, d, s), (acc, pm, sec) in zip(todo, results)],
            columns=list(RETRAIN_FIELDS),
        )  # fmt: skip
        cache = new if cache is None else pd.concat([cache, new], ignore_index=True)
        cols = _columns(space)
        store.write_frame(cache[list(cols)].rename(columns=cols), cache_path)
        known.update(
            {(k, rec.key(), s, d): (acc, pm) for (k, _a, d, s), (acc, pm, _) in zip(todo, results)}
        )
        log(f"retrain ({space.name}): cached in {cache_path}")
    rows = []
    for a, d in wanted:
        got = [known[(keyed[(a, d)], rec.key(), s, d)] for s in seeds]
        accs = np.array([g[0] for g in got])
        std = float(accs.std(ddof=1)) if len(accs) > 1 else float("nan")
        rows.append((a, d, float(accs.mean()), std, float(got[0][1])))
    return pd.DataFrame(
        rows, columns=["arch", "dataset", "retrain_acc", "retrain_acc_std", "params_m"]
    )


def _train(spec: JobSpec, space: Space, rec, todo: list, data_root: str,
           retrain_map: Callable | None, log: Callable[[str], None]) -> list[tuple]:  # fmt: skip
    """Run the retrainings of `todo` [(key, text, dataset, seed)]: Ray tasks under `retrain_map`
    (with evaluate.retrain's cpu and gpu), else one after another here."""
    cfg = spec.evaluate.retrain
    args = [
        (space.name, a, rec, d, data_root, s,
         f"{spec.job_dir}/retrain/{_digest(k, rec.key(), s, d)}.pt")
        for k, a, d, s in todo
    ]  # fmt: skip
    t0 = time.perf_counter()
    if retrain_map is not None:
        results = retrain_map(retrain_task, args, cpu=cfg.cpu, gpu=cfg.gpu)
    else:
        results = []
        for i, a in enumerate(args, 1):
            results.append(retrain_task(*a))
            log(f"  retrained {i}/{len(args)}: {results[-1][0]:.2f}% in {results[-1][2]:.1f}s")
    log(f"retrain ({space.name}): {len(todo)} runs in {time.perf_counter() - t0:.1f}s")
    return results


def _digest(*parts) -> str:
    return sha256_hex("|".join(map(str, parts)), 16)


def retrain_selected(
    spec: JobSpec, sel: pd.DataFrame, configs: dict[str, dict], retrain_map: Callable | None = None,
    log: Callable[[str], None] = print,
) -> pd.DataFrame:  # fmt: skip
    """`sel` with `retrain_acc` filled from the cache or by retraining, per search space of the
    trials (configs: run_id -> resolved search config); spaces that retrain per seed add
    `retrain_acc_std`, spaces whose cache keeps parameter counts add `params_m`."""
    dataset = {r: c.get("dataset") for r, c in configs.items()}
    space_of = sel["run_id"].map(lambda r: name_of(configs[r]))
    sel = sel.copy()
    sel["retrain_acc"] = np.nan
    for name in sorted(set(space_of)):
        space, mask = get_space(name), space_of == name
        part = sel[mask]
        got = retrain_space(spec, space, part, dataset, retrain_map=retrain_map, log=log)
        got = got.set_index(["arch", "dataset"])
        idx = list(zip(part["arch"], part["run_id"].map(dataset)))
        for col in _reported(space):
            sel.loc[mask, col] = got.loc[idx, col].to_numpy()
    return sel


def _reported(space: Space) -> list[str]:
    """The result columns a space's selections get: its cache says what it knows."""
    cols = _columns(space)
    return ["retrain_acc", *(["retrain_acc_std"] if "seed" in cols else []),
            *(["params_m"] if "params_m" in cols else [])]  # fmt: skip
