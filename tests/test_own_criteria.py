"""Your own stop criterion, named by import path: checked before work, the shared rules enforced
around it, offline (selections, MLflow metrics, report) and online (a Ray sweep stops where the
offline run on the same prefix says)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from ray_nas import cli, store
from ray_nas import criteria as C
from ray_nas.config import expand_grid, load_spec
from ray_nas.examples.stops import entropy_drop, mean_edge_entropy

from .conftest import TINY_SEARCH

EXAMPLE = "ray_nas.examples.stops:entropy_drop"
NO_SCORE = {"benchmark": None, "retrain": None}


def sharpening(T: int = 6) -> C.Trajectory:
    """alpha grows on nor_conv_3x3 on every edge: the entropy falls every epoch."""
    alpha = np.zeros((T + 1, 6, 5))
    alpha[:, :, 3] = np.arange(T + 1)[:, None] * 0.5
    return C.Trajectory.from_alpha(alpha)


# ------------------------------------------------------------------ the example criterion


def test_example_criterion_fires_at_the_first_epoch_below_the_threshold():
    traj = sharpening()
    h = mean_edge_entropy(traj)
    assert h[0] == pytest.approx(1.0) and (np.diff(h) < 0).all()
    threshold = float((h[2] + h[3]) / 2)
    spec = C.parse_criterion({"name": EXAMPLE, "threshold": threshold})
    r = spec.apply(traj)
    assert (r.epoch, r.fired, r.arch) == (3, True, traj.archs[3])
    assert r == entropy_drop(traj, threshold)
    for t in range(traj.last_epoch + 1):  # online == offline on every prefix
        p = spec.apply(traj.prefix(t))
        assert (p.epoch, p.fired) == ((3, True) if t >= 3 else (t, False))
    never = C.parse_criterion({"name": EXAMPLE, "threshold": 0.01}).apply(traj)
    assert (never.epoch, never.fired) == (6, False) and "never below 0.01" in never.note


def test_import_path_parameters_come_from_the_signature():
    spec = C.parse_criterion({"name": EXAMPLE, "threshold": 1})
    assert spec.params == {"threshold": 1.0} and isinstance(spec.params["threshold"], float)
    assert spec.label == f"{EXAMPLE}[threshold=1.0]" and not spec.info.builtin
    assert C.parse_criterion(EXAMPLE).params == {"threshold": 0.9}
    needs = C.parse_criterion({"name": "tests.bad_stops:needs_level", "level": 2, "ops": "none"})
    assert needs.params == {"level": 2.0, "ops": ("none",)}
    assert "level 2.0" in needs.apply(sharpening()).note


@pytest.mark.parametrize(
    "item, message",
    [
        ("no_such_lab.stops:entropy_drop", "cannot import module 'no_such_lab.stops'"),
        ("ray_nas.examples.stops:entropy_dorp", "has no function 'entropy_dorp'; did you mean 'entropy_drop'"),
        ({"name": EXAMPLE, "treshold": 0.5}, "no parameter 'treshold'; did you mean 'threshold'"),
        ({"name": EXAMPLE, "threshold": "high"}, "'threshold' expects float"),
        ("tests.bad_stops:needs_level", "missing parameter 'level'"),
        ({"name": "tests.bad_stops:needs_level", "level": 1, "ops": [1]}, "'ops' expects a list of strings"),
        ("tests.bad_stops:NOT_CALLABLE", "not a function"),
        ("ray_nas.examples.stops", "or name your own function as package.module:function"),
        ("ray_nas.examples.stops:", "expected package.module:function"),
    ],
)  # fmt: skip
def test_import_path_errors_name_the_problem(item, message):
    with pytest.raises(ValueError) as e:
        C.parse_criterion(item)
    assert message in str(e.value) and "\n" not in str(e.value)


RULE_BREAKERS = [
    ("epoch_zero", "returned epoch 0; a criterion chooses among epochs 1..6"),
    ("past_the_end", "returned epoch 7; a criterion chooses among epochs 1..6"),
    ("not_a_result", "returned int 6, not a StopResult"),
    ("raises", "raised RuntimeError: boom at the last epoch"),
    ("unfired_early", "did not fire but returned epoch 1; one that does not fire gives the last epoch (6)"),
]  # fmt: skip


@pytest.mark.parametrize("name, message", RULE_BREAKERS)
def test_the_shared_rules_are_enforced_around_every_criterion(name, message):
    spec = C.parse_criterion(f"tests.bad_stops:{name}")
    with pytest.raises(C.CriterionError) as e:
        spec.apply(sharpening())
    assert str(e.value).startswith(f"criterion 'tests.bad_stops:{name}' ")
    assert message in str(e.value) and "\n" not in str(e.value)


# ------------------------------------------------------------------ the command line


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory) -> Path:
    """One real tiny search (2 epochs), no benchmark and no retraining."""
    from ray_nas.search.trial import run_trial

    root = tmp_path_factory.mktemp("own")
    job = {"name": "own", "store": str(root / "store"), "tracking_uri": f"sqlite:///{root}/mlflow.db",
           "search": {**TINY_SEARCH, "epochs": 2, "steps_per_epoch": 2}, "evaluate": NO_SCORE}  # fmt: skip
    path = root / "own.yaml"
    path.write_text(yaml.safe_dump(job))
    spec = load_spec(path)
    cfg, rid, _ = expand_grid(spec)[0]
    assert run_trial(spec, cfg, rid, progress=False, log=lambda s: None) == "completed"
    return path


def _criteria_set(*items) -> str:
    return "criteria=" + yaml.safe_dump(list(items), default_flow_style=True).strip()


def _one_error_line(capsys, command: str, message: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"ray-nas {command}: error: ") and "\n" not in err, err
    assert message in err, err
    return err


@pytest.mark.parametrize(
    "item, message",
    [
        ({"name": "no_such_lab.stops:entropy_drop"}, "cannot import module 'no_such_lab.stops'"),
        ({"name": "ray_nas.examples.stops:entropy_dorp"}, "did you mean 'entropy_drop'"),
        ({"name": EXAMPLE, "treshold": 0.5}, "did you mean 'threshold'"),
    ],
)
def test_bad_names_exit_2_before_work(tiny_store, capsys, item, message):
    spec = load_spec(tiny_store)
    sel = Path(spec.job_dir) / "selections.parquet"
    status = Path(spec.job_dir) / "trials.parquet"
    assert cli.main(["evaluate", str(tiny_store), "--set", _criteria_set("final", item)]) == 2
    assert "criteria[1]: criterion" in _one_error_line(capsys, "evaluate", message)
    assert not sel.exists() and not status.exists()  # nothing read or written
    assert cli.main(["search", str(tiny_store), "--set", "stop=" + yaml.safe_dump(item, default_flow_style=True).strip(),
                     "--set", "search.seed=7"]) == 2  # fmt: skip
    assert "stop: criterion" in _one_error_line(capsys, "search", message)
    seed7 = expand_grid(load_spec(tiny_store, ["search.seed=7"]))[0][1]
    assert not os.path.exists(store.trial_paths(spec.job_dir, seed7)["status"])  # never started


@pytest.mark.parametrize("name, message", RULE_BREAKERS)
def test_rule_breakers_exit_2_and_write_nothing(tiny_store, capsys, name, message):
    spec = load_spec(tiny_store)
    rid = expand_grid(spec)[0][1]
    message = (
        message.replace("1..6", "1..2").replace("epoch 7", "epoch 3").replace("int 6", "int 2")
    )
    message = message.replace("last epoch (6)", "last epoch (2)")
    args = ["evaluate", str(tiny_store), "--set", _criteria_set("final", f"tests.bad_stops:{name}")]
    assert cli.main(args) == 2
    err = _one_error_line(capsys, "evaluate", message)
    assert f"trial {rid}: criterion 'tests.bad_stops:{name}'" in err
    assert not (Path(spec.job_dir) / "selections.parquet").exists()


def test_criteria_command_lists_the_jobs_own_functions(tiny_store, tmp_path, capsys):
    raw = yaml.safe_load(tiny_store.read_text())
    raw["criteria"] = ["final", {"name": EXAMPLE, "threshold": 0.5}]
    raw["stop"] = {"name": "tests.bad_stops:needs_level", "level": 1.0}
    job = tmp_path / "listed.yaml"
    job.write_text(yaml.safe_dump(raw))
    assert cli.main(["criteria", str(job)]) == 0
    out = capsys.readouterr().out
    assert f"{EXAMPLE} The first epoch whose mean normalised edge entropy" in out
    assert "  threshold=0.9" in out and "  level=(required)" in out and "your code" in out
    assert cli.main(["criteria"]) == 0
    assert EXAMPLE not in capsys.readouterr().out


# ------------------------------------------------------------------ offline and online, on Ray


@pytest.mark.ray
def test_example_criterion_online_and_offline(ray_session, write_job, capsys):
    """A real sweep stops where the criterion fires; `evaluate` selects that epoch offline, logs it
    to MLflow, and the report shows it. alpha.lr 0.1 makes the entropy fall ~0.01 per epoch
    (1.0, 0.993, 0.987, 0.976, ... measured), so threshold 0.98 fires at epoch 3 of 5."""
    stop = {"name": EXAMPLE, "threshold": 0.98}
    job = write_job(name="entropy", search={"epochs": 5, "steps_per_epoch": 2, "alpha": {"lr": 0.1}},
                    grid={"seed": [0]}, stop=stop, criteria=["final", stop], evaluate=NO_SCORE,
                    resources={"cpu": 1, "gpu": 0})  # fmt: skip
    assert cli.main(["sweep", str(job)]) == 0
    spec = load_spec(job)
    trials, _ = store.read_job(spec.job_dir)
    traj = C.parse_criterion(stop)
    from ray_nas.criteria import from_trial

    stored = from_trial(trials[0])
    last = stored.last_epoch
    assert 1 <= last < 5, "the online stop must end the search early"
    assert traj.apply(stored).fired and traj.apply(stored).epoch == last
    assert not traj.apply(stored.prefix(last - 1)).fired
    st = store.read_status(spec.job_dir).iloc[0]
    assert st.status == "stopped" and st.stop_epoch == last
    # offline: selections.parquet, MLflow, report
    sel = pd.read_parquet(f"{spec.job_dir}/selections.parquet").set_index("label")
    label = f"{EXAMPLE}[threshold=0.98]"
    assert sel.loc[label, "stop_epoch"] == last and sel.loc[label, "fired"]
    assert sel.loc[label, "criterion"] == EXAMPLE and sel.loc["final", "stop_epoch"] == last
    from mlflow.tracking import MlflowClient

    client = MlflowClient(spec.tracking_uri)
    exp = client.get_experiment_by_name(spec.name)
    runs = client.search_runs([exp.experiment_id], "tags.`ray_nas.key` LIKE 'job:%'")
    # the summary over the group's one trial, on the job's parent run (section `all`)
    assert runs[0].data.metrics[f"all/{EXAMPLE} threshold:0.98.stop_epoch"] == last
    assert runs[0].data.metrics[f"all/{EXAMPLE} threshold:0.98.fired"] == 1.0
    capsys.readouterr()
    assert cli.main(["report", str(job)]) == 0
    page = (Path(spec.job_dir) / "report.html").read_text()
    assert f"<code>{label}</code>" in page


def test_rule_breaker_online_fails_its_trial_with_one_line(tiny_store, capsys):
    # another search than the store's job (its job.yaml): a store of its own
    other = [f"store={tiny_store.parent / 'store_seed9'}", "search.seed=9"]
    spec = load_spec(tiny_store, other)
    rid = expand_grid(spec)[0][1]
    stop = 'stop={name: "tests.bad_stops:raises"}'
    sets = [a for o in other for a in ("--set", o)]
    assert cli.main(["search", str(tiny_store), "--quiet", "--set", stop, *sets]) == 2
    err = _one_error_line(capsys, "search", "raised RuntimeError: boom at the last epoch")
    assert f"trial {rid}: online stop: criterion 'tests.bad_stops:raises'" in err
    st = store.read_status(spec.job_dir).set_index("run_id").loc[rid]
    assert st.status == "failed" and "tests.bad_stops:raises" in st.error
