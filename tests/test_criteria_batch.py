"""The criteria over many trials at once (criteria.apply_many, offline.select.select) give what the
per-trial functions give (CriterionSpec.apply on each trial's Trajectory, select_per_trial):
on the golden NAS-Bench-201 store and on random trajectories of every space, with gates,
divergence, NaNs, ties and short searches. And the store's dataset scan (read_job) reads what
the per-file reader (read_job_files) reads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ray_nas import criteria as C
from ray_nas import spaces
from ray_nas import store as stored
from ray_nas.config import load_spec
from ray_nas.offline import select as sl
from ray_nas.offline.results import JobResults

from .nb201_golden import EPOCHS, _job, write_store


def same_trials(a: list[stored.TrialData], b: list[stored.TrialData]) -> None:
    """Every field of two lists of trials equal (arrays: dtype, shape and values, NaN = NaN)."""
    assert [t.run_id for t in a] == [t.run_id for t in b]
    for x, y in zip(a, b):
        assert (x.config, x.ops, x.edges, x.cells, x.connections) == (
            y.config, y.ops, y.edges, y.cells, y.connections,
        )  # fmt: skip
        pairs = [(getattr(x, f), getattr(y, f)) for f in
                 ("alpha", "weights", "connection_alpha", "connection_weights")]  # fmt: skip
        assert x.epochs.keys() == y.epochs.keys() and x.extras.keys() == y.extras.keys()
        pairs += [(x.epochs[k], y.epochs[k]) for k in x.epochs]
        pairs += [(x.extras[k], y.extras[k]) for k in x.extras]
        for u, v in pairs:
            assert u.dtype == v.dtype and u.shape == v.shape
            assert np.array_equal(u, v, equal_nan=u.dtype.kind == "f")


def test_golden_store_selects_and_reads_as_per_trial(tmp_path):
    write_store(str(tmp_path))
    job = _job(str(tmp_path), "job.yaml", search={"epochs": EPOCHS},
               evaluate={"benchmark": "nb201", "retrain": None})  # fmt: skip
    res = JobResults(load_spec(job))
    trials = res.trials
    scanned, problems = stored.scan_trials(res.spec.job_dir, [t.run_id for t in trials])
    assert not problems and len(scanned) == len(trials) == 6
    by_file, problems = stored.read_job_files(res.spec.job_dir)
    assert not problems
    same_trials(trials, sorted(by_file, key=lambda t: t.run_id))
    _, per_epoch = res._scores
    own = res.own_metric
    for specs in (res.criteria, C.default_criteria("nb201") + OWN):
        args = (trials, specs, per_epoch, {trials[0].run_id}, lambda t: own[t.run_id])
        now, reference = sl.select(*args), sl.select_per_trial(*args)
        pd.testing.assert_frame_equal(now, reference)
        assert now["fired"].nunique() == 2 and now["in_progress"].sum() == len(specs)


def test_damaged_and_mixed_stores_read_as_per_file(tmp_path, monkeypatch):
    """read_job (columns read whole, in chunks) gives the trials and the problems the per-file
    reader gives on a store with every kind of file: DrNAS's concentration filled, a schema-1
    alphas file without it, a misplaced file, a truncated one, epochs out of order, a missing
    file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    job_dir = f"{write_store(str(tmp_path))}/golden"
    ids = stored.list_run_ids(job_dir)
    paths = [stored.trial_paths(job_dir, r) for r in ids]

    def rewrite(path, change):
        table = pq.read_table(path)
        meta = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
        stored.write_table(change(table.replace_schema_metadata(None)), path, meta)

    rewrite(paths[0]["alphas"], lambda t: t.set_column(
        t.schema.get_field_index("concentration"), stored.ALPHAS_SCHEMA.field("concentration"),
        pa.array(np.linspace(1, 2, t.num_rows, dtype=np.float32))))  # fmt: skip
    rewrite(paths[1]["alphas"], lambda t: t.drop_columns(["concentration"]))
    (tmp_path / "x").write_bytes(open(paths[3]["epochs"], "rb").read())
    (tmp_path / "x").replace(paths[2]["epochs"])
    data = open(paths[4]["alphas"], "rb").read()
    open(paths[4]["alphas"], "wb").write(data[: len(data) // 2])
    rewrite(paths[5]["epochs"], lambda t: t.take(pa.array(np.arange(t.num_rows)[::-1])))
    lone = stored.trial_paths(job_dir, "0123456789ab")["epochs"]
    stored.write_table(pq.read_table(paths[3]["epochs"]), lone)
    monkeypatch.setattr(stored.trials, "SCAN_CHUNK", 3)
    trials, problems = stored.read_job(job_dir)
    by_file, reference = stored.read_job_files(job_dir)
    assert problems == reference and len(problems) == 4 and len(trials) == 3
    same_trials(trials, sorted(by_file, key=lambda t: t.run_id))
    assert "concentration" in trials[0].extras and not trials[1].extras
    # the sound trials came from the column reads, the others went to the per-file reader
    scanned, left = stored.scan_trials(job_dir, sorted([*ids, "0123456789ab"]))
    assert [t.run_id for t in scanned] == [ids[0], ids[1], ids[3]]
    assert left == sorted([ids[2], ids[4], ids[5], "0123456789ab"]) == sorted(problems)


# ------------------------------------------------------------------ random trajectories


def peak_entropy_drop(traj: C.Trajectory, after: int = 1) -> C.StopResult:
    """A criterion of a user's own (named by import path in OWN): the epoch where the mean
    entropy of the op distribution falls most."""
    w = np.clip(traj.weights, 1e-12, 1)
    h = -(w * np.log(w)).sum(axis=2).mean(axis=1)
    if traj.last_epoch <= after:
        return C.no_stop(traj, "too short")
    drop = np.zeros_like(h)
    drop[1:] = h[:-1] - h[1:]
    drop[: after + 1] = np.nan
    t = C.best_epoch(drop)
    return C.stop_at(traj, t) if t is not None else C.no_stop(traj, "no drop")


OWN = [C.parse_criterion({"name": "tests.test_criteria_batch:peak_entropy_drop", "after": 2})]

VARIANTS = [
    C.parse_criterion(item)
    for item in (
        {"name": "ss_eq12", "patience": 3, "gate": False},
        {"name": "ss_eq12", "op": "skip_connect", "patience": 2},
        {"name": "ss_eq12", "op": "sep_conv_3x3", "cell": "reduce"},
        {"name": "ss_eq12", "op": "conv3x3-bn-relu", "cell": "shared"},
        {"name": "ss_eq13", "exclude": ["none"], "patience": 5},
        {"name": "ss_eq13", "exclude": ["none", "avg_pool_3x3"], "gate_all_ops": False},
        {"name": "ss_eq13", "op": "sep_conv_5x5", "exclude": ["none"], "cell": "normal"},
        {"name": "dartsplus_sc", "k": 1},
        {"name": "dartsplus_rt", "k": 3, "learnable_only": True},
        {"name": "dartsplus_rt", "k": 1},
        {"name": "darts_es", "window": 2, "delta": 1, "factor": 1.1, "rollback": False},
        {"name": "darts_es", "window": 2, "delta": 2, "factor": 1.1, "start_epoch": 10},
        {"name": "darts_es", "window": 9, "delta": 3, "factor": 1.05, "ev_freq": 1,
         "start_epoch": 0},
        {"name": "darts_es", "window": 1, "delta": 1, "factor": 1.0, "ev_freq": 3},
        {"name": "oracle", "metric": "cifar100_test"},
        {"name": "oracle", "metric": "imagenet_test"},
    )
]  # fmt: skip

#: (space, op set) of the random trials
KINDS = [
    ("nb201", spaces.get_space("nb201").ops),
    ("nb201", spaces.get_space("nb201").ops[1:]),
    ("nb201", tuple(o for o in spaces.get_space("nb201").ops if o != "skip_connect")),
    ("darts", spaces.get_space("darts").ops),
    ("nb1shot1_s2", spaces.get_space("nb1shot1_s2").ops),
]


def _arch_pool(rng, space: str, ops: tuple[str, ...], n: int = 40) -> list[str]:
    unit = spaces.get_space(space)
    rows = len(unit.rows())
    return [unit.genotype_text(rng.dirichlet(np.ones(len(ops)) * 0.5, size=rows), ops)
            for _ in range(n)]  # fmt: skip


def random_trials(n: int, seed: int = 0) -> tuple[list[stored.TrialData], C.MetricsOf]:
    """`n` random trials (`store.TrialData`, as read from a store) of the KINDS, and the
    per-arch benchmark scores of their archs (NaN for some)."""
    rng = np.random.default_rng(seed)
    pools = {(s, ops): _arch_pool(rng, s, ops) for s, ops in KINDS}
    table = {a: rng.uniform(40, 95, size=2) for pool in pools.values() for a in pool}
    for a in list(table)[::7]:
        table[a] = np.array([np.nan, table[a][1]])
    trials = []
    for i in range(n):
        space, ops = KINDS[int(rng.integers(len(KINDS)))]
        unit = spaces.get_space(space)
        rows = unit.rows()
        e, k = len(rows), len(ops)
        T = int(rng.choice([0, 1, 2, 3, 5, 8, 13, 20, 30]))
        drift = rng.normal(scale=0.06, size=(e, k))
        noise = rng.normal(scale=0.05, size=(T + 1, e, k)) * (rng.random((T + 1, 1, 1)) < 0.6)
        alpha = np.cumsum(drift + noise, axis=0)
        if rng.random() < 0.2:
            alpha = np.round(alpha, 1)  # ties in the rankings and magnitudes
        z = np.exp(alpha - alpha.max(axis=2, keepdims=True))
        weights = z / z.sum(axis=2, keepdims=True)
        if T and rng.random() < 0.12:  # a diverged search: NaN or inf from some epoch on
            at = int(rng.integers(1, T + 1))
            (alpha if rng.random() < 0.5 else weights)[at:, int(rng.integers(e))] = (
                np.nan if rng.random() < 0.7 else np.inf
            )
        pool = pools[space, ops]
        archs = np.array(pool, dtype=object)[np.minimum.accumulate(
            rng.integers(len(pool), size=T + 1)[::-1])[::-1]]  # fmt: skip
        eig = np.exp(np.cumsum(rng.normal(0.05, 0.3, size=T + 1)))
        pattern = rng.random()
        if pattern < 0.2:
            eig[rng.random(T + 1) < 0.3] = np.nan
        elif pattern < 0.35:
            eig[1::2] = np.nan  # hessian_every 2
        elif pattern < 0.4:
            eig[:] = np.nan
        eig[0] = np.nan if rng.random() < 0.5 else eig[0]
        valid = rng.uniform(30, 60, size=T + 1)
        if rng.random() < 0.3:
            valid = np.round(valid / 5) * 5  # ties
        if rng.random() < 0.1:
            valid[:] = np.nan
        valid[rng.random(T + 1) < 0.1] = np.nan
        epochs = {"epoch": np.arange(T + 1, dtype=np.int32), "valid_acc": valid,
                  "hessian_eig": eig, "arch": archs}  # fmt: skip
        cells = tuple(c for c, _ in rows) if rng.random() < 0.9 else ()
        trials.append(stored.TrialData(
            run_id=f"r{i:05d}", config={"space": space}, ops=tuple(ops),
            edges=tuple(edge for _, edge in rows), epochs=epochs, alpha=alpha,
            weights=weights, cells=cells,
        ))  # fmt: skip

    def metrics_of(space: str, archs) -> dict[str, np.ndarray]:
        got = np.array([table.get(a, (np.nan, np.nan)) for a in archs]).reshape(-1, 2)
        return {"cifar10_test": got[:, 0], "cifar100_test": got[:, 1]}

    return trials, metrics_of


@pytest.mark.slow
def test_3000_random_trajectories_select_as_per_trial():
    trials, metrics_of = random_trials(3000, seed=2)
    specs = list({c.label: c for s in spaces.NAMES for c in C.default_criteria(s)}.values())
    specs += VARIANTS + OWN
    fired = set()
    # every criterion with the benchmark's per-epoch scores; the oracles also without any
    for scores, some in ((metrics_of, specs), (None, [c for c in specs if c.name == "oracle"])):
        got = C.apply_many(some, trials, scores)
        for i, t in enumerate(trials):
            traj = C.from_trial(t, scores(t.space, t.epochs["arch"]) if scores else None)
            for j, spec in enumerate(some):
                r = spec.apply(traj)
                now = (got.epoch[i, j], got.fired[i, j], got.arch[i, j], got.note[i, j])
                assert now == (r.epoch, r.fired, r.arch, r.note), (t.run_id, spec.label)
                if r.fired:
                    fired.add(spec.name)
    stages = {n for n, info in C.CRITERIA.items() if info.stage}  # darts_pt: a stage of its own
    assert fired == {*C.CRITERIA} - stages | {"tests.test_criteria_batch:peak_entropy_drop"}
