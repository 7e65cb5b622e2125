"""The DARTS-PT selection stage (`darts_pt` in a job's criteria): each ended trial's final
supernet (its checkpoint, kept with `keep_checkpoints: true`) projected by
`ray_nas.search.pt`, once per (trial, parameters, final epoch), cached in `{store}/{job}/pt.parquet`.

`ray-nas evaluate` runs what the cache lacks (`run_pt`: one Ray task per trial with the job's
`resources` under a cluster, else one after another here) before it selects; every reader of the
job (evaluate, report, compare, the API) reads the cache back as rows of selections
(`pt_rows`), labelled like any criterion (`darts_pt`, `darts_pt[tune_epochs=1]`), scored by the
benchmark table or retrained like the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pandas as pd

from ray_nas import criteria as crit
from ray_nas import store
from ray_nas.config import JobSpec
from ray_nas.errors import SpecError
from ray_nas.offline.select import SELECTION_COLUMNS
from ray_nas.search.integrity import FINAL_STATUSES, redo_command

#: the stage's cache, in the job's folder
PT_CACHE = "pt.parquet"
PT_COLUMNS = ["run_id", "params", "arch", "epoch", "valid_acc", "decisions", "tune_epochs_run",
              "seconds"]  # fmt: skip


def stage_specs(specs: list[crit.CriterionSpec]) -> list[crit.CriterionSpec]:
    """The selection stages among `specs` (darts_pt)."""
    return [c for c in specs if c.info.stage]


def read_cache(job_dir: str) -> pd.DataFrame | None:
    """The job's pt.parquet, or None."""
    path = f"{job_dir}/{PT_CACHE}"
    return store.read_frame(path) if store.exists(path) else None


def _last_epoch(t: store.TrialData) -> int:
    return int(t.epochs["epoch"][-1])


def _ended(status: pd.DataFrame | None) -> set[str]:
    """run_ids of the trials that ended completed or stopped (their checkpoint is their last
    epoch's supernet); diverged, running and failed trials are not projected."""
    if status is None or not len(status):
        return set()
    last = status.drop_duplicates("run_id", keep="last")
    ok = [s in FINAL_STATUSES and s != "diverged" for s in last["status"]]
    return set(last.loc[ok, "run_id"])


def pending(
    trials: list[store.TrialData],
    specs: list[crit.CriterionSpec],
    ended: set[str],
    cache: pd.DataFrame | None,
) -> list[tuple[store.TrialData, crit.CriterionSpec]]:
    """(trial, spec) pairs the cache lacks, for the ended trials (`ended`, run_ids) of the job."""
    done = set()
    if cache is not None:
        done = set(zip(cache["run_id"], cache["params"], cache["epoch"].astype(int)))
    return [
        (t, c) for c in stage_specs(specs) for t in trials
        if t.run_id in ended and (t.run_id, c.params_json, _last_epoch(t)) not in done
    ]  # fmt: skip


def check_checkpoints(spec: JobSpec, todo: list) -> None:
    """SpecError (one line) naming the first trial to project whose checkpoint is gone, before
    any work."""
    for t, c in todo:
        path = store.trial_paths(spec.job_dir, t.run_id)["checkpoint"]
        if not store.exists(path):
            raise SpecError(
                f"criteria: {c.label} projects trial {t.run_id}'s final supernet, but its "
                f"checkpoint {path} is gone (keep_checkpoints: false deletes it when a trial ends); "
                f"set keep_checkpoints: true and run the trial again (`{redo_command(spec, t.run_id)}`)"
            )


def run_pt(
    spec: JobSpec,
    trials: list[store.TrialData],
    specs: list[crit.CriterionSpec],
    status: pd.DataFrame | None,
    cache: pd.DataFrame | None,
    pt_map: Callable | None = None,
    log: Callable[[str], None] = print,
) -> pd.DataFrame | None:
    """Project every ended trial the cache (`cache`: the job's pt.parquet as read, or None) lacks
    for the stage criteria among `specs`, append the results to pt.parquet; returns the cache as
    written, or None when nothing ran. `pt_map`: search.sweep.ray_map (one task per trial, the
    job's `resources`), else one after another here."""
    if not stage_specs(specs):
        return None
    ended = _ended(status)
    todo = pending(trials, specs, ended, cache)
    n = sum(t.run_id in ended for t in trials) * len(stage_specs(specs))
    log(f"darts_pt: {n} projections, {n - len(todo)} cached, {len(todo)} to run")
    if not todo:
        return None
    check_checkpoints(spec, todo)
    from ray_nas.search.pt import pt_task  # torch: imported on use

    args = [
        (t.config, store.trial_paths(spec.job_dir, t.run_id)["checkpoint"], dict(c.params),
         _last_epoch(t))
        for t, c in todo
    ]  # fmt: skip
    t0 = time.perf_counter()

    def save(done: list, results: list) -> None:
        """The cache with the results of `done` (replacing older rows of the same trial and
        parameters), written whole."""
        nonlocal cache
        new = pd.DataFrame(
            [(t.run_id, c.params_json, *r) for (t, c), r in zip(done, results)], columns=PT_COLUMNS
        )
        new["epoch"] = new["epoch"].astype("int64")
        if cache is not None:
            key = set(zip(new["run_id"], new["params"]))
            old = cache[[k not in key for k in zip(cache["run_id"], cache["params"])]]
            new = pd.concat([old, new], ignore_index=True)
        store.write_frame(new, f"{spec.job_dir}/{PT_CACHE}")
        cache = new

    if pt_map is not None:
        results = pt_map(pt_task, args, cpu=spec.resources.cpu, gpu=spec.resources.gpu,
                         name="darts_pt", key="resources")  # fmt: skip
        save(todo, results)
    else:  # one after another: each result cached as it comes (a failure keeps the others)
        for i, a in enumerate(args, 1):
            r = pt_task(*a)
            save([todo[i - 1]], [r])
            log(f"  projected {i}/{len(args)} (trial {todo[i - 1][0].run_id}): "
                f"{r[2]:.2f}% valid in {r[5]:.1f}s")  # fmt: skip
    log(f"darts_pt: {len(todo)} projections in {time.perf_counter() - t0:.1f}s, cached in "
        f"{spec.job_dir}/{PT_CACHE}")  # fmt: skip
    return cache


def pt_rows(
    trials: list[store.TrialData],
    specs: list[crit.CriterionSpec],
    cache: pd.DataFrame | None,
) -> pd.DataFrame:
    """Selections (SELECTION_COLUMNS) of the stage criteria among `specs`, from the cache: one row
    per trial whose projection at its current last epoch is cached (stop_epoch that epoch, not
    fired, the projected genotype)."""
    rows = []
    stages = stage_specs(specs)
    if stages and cache is not None and len(cache):
        got = {(r.run_id, r.params, int(r.epoch)): r for r in cache.itertuples()}
        for c in stages:
            params = c.params_json
            for t in trials:
                r = got.get((t.run_id, params, _last_epoch(t)))
                if r is None:
                    continue
                note = (f"projected supernet of epoch {int(r.epoch)}: {r.valid_acc:.2f}% "
                        f"search-valid after {int(r.tune_epochs_run)} tuning epochs")  # fmt: skip
                rows.append((t.run_id, c.name, params, c.label, False, int(r.epoch), r.arch,
                             note, False))  # fmt: skip
    df = pd.DataFrame(rows, columns=SELECTION_COLUMNS)
    df["stop_epoch"] = df["stop_epoch"].astype("int32")
    df["fired"] = df["fired"].astype(bool)
    df["in_progress"] = df["in_progress"].astype(bool)
    return df


def extra_archs(trials: list[store.TrialData], cache: pd.DataFrame | None) -> dict[str, list]:
    """space -> the projected genotypes of its trials (for the benchmark lookup)."""
    if cache is None or not len(cache):
        return {}
    space_of = {t.run_id: t.space for t in trials}
    out: dict[str, list] = {}
    for rid, arch in zip(cache["run_id"], cache["arch"]):
        if rid in space_of:
            out.setdefault(space_of[rid], []).append(arch)
    return {k: list(dict.fromkeys(v)) for k, v in out.items()}
