"""One trial of a job's grid on its own (`ray-nas search --trial / --trial-index / --set`), as a
SLURM array or a shell loop runs it: the same run_id and store as the sweep's, refusals first."""

import os

import pandas as pd
import pytest

from ray_nas import store
from ray_nas.cli import main
from ray_nas.cli.commands import sweep_command
from ray_nas.config import expand_grid, load_spec

GRID = {"lr_scheme": ["nb201", "exchange"], "seed": [0, 1, 2]}


def _job(write_job, name="one", grid=None, **top):
    return write_job(name=name, search={"epochs": 1, "steps_per_epoch": 2}, grid=grid or GRID,
                     resources={"cpu": 1, "gpu": 0}, **top)  # fmt: skip


@pytest.mark.parametrize(
    "args, says",
    [
        (["--trial", "0123456789ab"], "--trial 0123456789ab: not a trial of job 'one'; its 6 run_ids: "),
        (["--trial-index", "6"], "--trial-index 6: job 'one' has 6 trials (0..5, in `ray-nas sweep"),
        (["--trial-index", "-1"], "--trial-index -1: job 'one' has 6 trials (0..5"),
        (["--set", "search.seed=7", "--set", "search.lr_scheme=nb201"],
         "--set search.seed=7: not a value of the job's grid (seed: [0, 1, 2])"),
        (["--set", "search.seed=1"],
         "--set search.seed=1: 2 trials of job 'one' have this value; set also lr_scheme: [nb201, exchange]"),
        (["--trial-index", "0", "--set", "search.seed=1"],
         "--trial-index and --set on a grid axis: each picks a trial of the job; use one of them"),
    ],
)  # fmt: skip
def test_refusals_name_what_is_valid_and_write_nothing(write_job, capsys, args, says):
    job = _job(write_job)
    assert main(["search", str(job), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1, err
    assert not os.path.exists(load_spec(job).job_dir)


def test_a_grid_value_picks_the_sweeps_trial_and_job_identity_ignores_it(write_job, capsys):
    """`--set search.seed=1` on a grid axis is the grid point, not a change of the job: the store
    written by another trial of the same job takes it, and its run_id is the sweep's."""
    job = _job(write_job, grid={"seed": [0, 1]})
    spec = load_spec(job)
    rids = [rid for _, rid, _ in expand_grid(spec)]
    assert main(["search", str(job), "--quiet", "--trial-index", "0"]) == 0
    assert main(["search", str(job), "--quiet", "--set", "search.seed=1"]) == 0
    out = capsys.readouterr().out
    assert f"search {rids[1]} completed" in out
    assert sorted(store.read_status(spec.job_dir).run_id) == sorted(rids)
    # a second run of the same trial does nothing, by run_id or by index
    assert main(["search", str(job), "--quiet", "--trial", rids[1]]) == 0
    assert "already complete" in capsys.readouterr().out
    # `--redo RUN_ID` alone redoes that trial of the grid
    assert main(["search", str(job), "--quiet", "--redo", rids[0]]) == 0
    assert f"trial {rids[0]}: files moved to" in capsys.readouterr().out
    # the job itself changed (search defaults): still refused
    assert main(["search", str(job), "--trial-index", "0", "--set", "search.epochs=2"]) == 2
    assert "with a different `search`" in capsys.readouterr().err


def _frames(job_dir: str, kind: str) -> pd.DataFrame:
    df = pd.read_parquet(f"{job_dir}/{kind}")
    df = df.assign(run_id=df.run_id.astype(str)).drop(columns=["seconds"], errors="ignore")
    return df.sort_values([c for c in ("run_id", "epoch", "row") if c in df]).reset_index(drop=True)


@pytest.mark.ray
@pytest.mark.slow
def test_three_grid_points_one_by_one_equal_the_sweep(ray_session, write_job, tmp_path):
    grid = {"seed": [0, 1, 2]}
    job = _job(write_job, name="three", grid=grid)
    swept = tmp_path / "swept.yaml"  # the same job, its own store
    swept.write_text(job.read_text().replace(str(tmp_path / "store"), str(tmp_path / "swept")))
    rids = [rid for _, rid, _ in expand_grid(load_spec(job))]
    assert main(["search", str(job), "--quiet", "--trial-index", "0"]) == 0
    assert main(["search", str(job), "--quiet", "--trial", rids[1]]) == 0
    assert main(["search", str(job), "--quiet", "--set", "search.seed=2"]) == 0
    assert sweep_command(str(swept), [], evaluate=False) == 0
    one, sweep = load_spec(job).job_dir, load_spec(swept).job_dir
    for kind in ("epochs", "alphas"):
        a, b = _frames(one, kind), _frames(sweep, kind)
        assert sorted(a.run_id.unique()) == sorted(rids)
        pd.testing.assert_frame_equal(a, b)
    ta, tb = (pd.read_parquet(f"{d}/trials.parquet").sort_values("run_id") for d in (one, sweep))
    assert list(ta.run_id) == list(tb.run_id) and list(ta.status) == list(tb.status)

    # the same job.yaml but for the store path (and so the checksum header that covers it)
    def body(d: str) -> bytes:
        return store.read_bytes(f"{d}/job.yaml").split(b"\n", 1)[1]

    assert body(one) == body(sweep).replace(b"/swept", b"/store")
