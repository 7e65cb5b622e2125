"""Every job in jobs/ loads, expands to the paper's trials and carries its row's settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from ray_nas.cli import main
from ray_nas.config import expand_grid, load_spec
from ray_nas.criteria import default_criteria, parse_criterion
from ray_nas.spaces import nb201

REPO = Path(__file__).resolve().parents[1]
SEEDS = [0, 1, 2, 3, 4]

#: job file -> trials it expands to (grid values x 5 seeds; quickstart: 2 schemes x 3 seeds)
TRIALS = {
    "jobs/quickstart.yaml": 6,
    "jobs/paper/baseline.yaml": 5,
    "jobs/paper/exp1_warmup.yaml": 15,
    "jobs/paper/exp2_alpha_l2.yaml": 10,
    "jobs/paper/exp3_pretrain.yaml": 5,
    "jobs/paper/exp4_alpha_lr.yaml": 15,
    "jobs/paper/exp5_exchange.yaml": 5,
    "jobs/paper/exp6_no_skip.yaml": 5,
    "jobs/paper/exp7_long.yaml": 5,
    "jobs/paper/table2.yaml": 35,
    "jobs/paper/table2_ss_darts.yaml": 10,  # + the DARTS-ES runs at batch 128
    "jobs/paper/table3_weights_lr.yaml": 30,
    "jobs/paper/table4_darts_space.yaml": 1,
    "jobs/paper/exp8_nb1shot1.yaml": 15,  # 3 NAS-Bench-1Shot1 spaces x 5 seeds
    "jobs/paper/table4_baselines_sdarts_gdas_snas_nasp.yaml": 30,  # 10 rows x 3 seeds (DARTS space)
    "jobs/paper/table4_baselines.yaml": 45,  # Table 4's 15 search rows x 3 seeds (DARTS space)
    "jobs/beyond/collapse_fixes.yaml": 110,  # 11 algorithms x 2 lr schemes x 5 seeds (NB201)
    # small examples (run at a tiny size by tests/test_examples.py): 2 seeds each
    "jobs/examples/darts_space.yaml": 2,
    "jobs/examples/gaea_nb201.yaml": 2,
    "jobs/examples/drnas_nb201.yaml": 2,
    "jobs/examples/nb1shot1.yaml": 2,
}
TABLE4 = "jobs/paper/table4_darts_space.yaml"
EXP8 = "jobs/paper/exp8_nb1shot1.yaml"
BASELINES = "jobs/paper/table4_baselines_sdarts_gdas_snas_nasp.yaml"
TABLE4_ALL = "jobs/paper/table4_baselines.yaml"
PAPER = [j for j in TRIALS if j.startswith("jobs/paper/")
         and j not in (TABLE4, EXP8, BASELINES, TABLE4_ALL)]  # fmt: skip


def _configs(job: str) -> list:
    return [cfg for cfg, _rid, _point in expand_grid(load_spec(REPO / job))]


def _values(job: str, attr: str) -> list:
    """Distinct values of a dotted SearchConfig attribute over the job's trials, sorted."""
    out = set()
    for cfg in _configs(job):
        for part in attr.split("."):
            cfg = getattr(cfg, part)
        out.add(cfg)
    return sorted(out)


def _constant_weights_lr(job: str) -> list[float]:
    """The weights' lr of every trial, asserting the schedule keeps it constant."""
    cfgs = _configs(job)
    assert {c.weights.schedule for c in cfgs} == {"constant"}, job
    return sorted({c.weights.lr for c in cfgs})


def test_every_job_file_is_listed():
    on_disk = {str(p.relative_to(REPO)) for p in (REPO / "jobs").rglob("*.yaml")}
    assert on_disk == set(TRIALS)


@pytest.mark.parametrize("job", list(TRIALS))
def test_job_loads_and_expands(job):
    path = REPO / job
    assert path.read_text().splitlines()[0] == f"# Run: ray-nas sweep {job}"
    spec = load_spec(path)
    assert spec.name == path.stem
    trials = expand_grid(spec)
    assert len(trials) == TRIALS[job]
    assert len({rid for _cfg, rid, _point in trials}) == len(trials)  # no two trials alike


@pytest.mark.parametrize("job", PAPER)
def test_paper_job_common_settings(job):
    spec = load_spec(REPO / job)
    assert spec.store == "/mnt/shared/runs"
    assert spec.tracking_uri == "http://127.0.0.1:5000"
    assert (spec.resources.cpu, spec.resources.gpu) == (2, 0.25)
    assert spec.grid["seed"] == SEEDS
    assert spec.evaluate.benchmark == "/mnt/shared/nb201/nb201.parquet"
    assert spec.criteria, "every paper job names the criteria its row reports"
    for cfg in _configs(job):
        assert cfg.dataset == "cifar10"
        assert cfg.data_root == "/mnt/shared/data"
        assert cfg.split_file == "/mnt/shared/data/nb201/cifar-split.txt"


def test_baseline_is_s1():
    (cfg, *_), *_ = expand_grid(load_spec(REPO / "jobs/paper/baseline.yaml"))
    assert (cfg.epochs, cfg.batch_size, cfg.warmup_epochs) == (50, 64, 0)
    assert (cfg.weights.lr, cfg.weights.lr_min, cfg.weights.schedule) == (0.025, 0.001, "cosine")
    assert (cfg.alpha.lr, cfg.alpha.weight_decay) == (3.0e-4, 1.0e-3)
    assert cfg.ops == nb201.OPS


def test_exp1_warmup_then_50_joint_epochs():
    assert _values("jobs/paper/exp1_warmup.yaml", "warmup_epochs") == [10, 20, 30]
    assert _values("jobs/paper/exp1_warmup.yaml", "epochs") == [50]


def test_exp2_alpha_l2():
    assert _values("jobs/paper/exp2_alpha_l2.yaml", "alpha.weight_decay") == [0.005, 0.01]


def test_exp3_pretrain_100_frozen_then_50_joint():
    cfgs = _configs("jobs/paper/exp3_pretrain.yaml")
    assert {(c.warmup_epochs, c.epochs, c.total_epochs) for c in cfgs} == {(100, 50, 150)}


def test_exp4_alpha_lr():
    assert _values("jobs/paper/exp4_alpha_lr.yaml", "alpha.lr") == [0.001, 0.002, 0.003]


def test_exp5_exchanges_the_lr_schemes():
    assert _constant_weights_lr("jobs/paper/exp5_exchange.yaml") == [3.0e-4]
    assert _values("jobs/paper/exp5_exchange.yaml", "alpha.lr") == [0.025]
    assert _values("jobs/paper/exp5_exchange.yaml", "epochs") == [50]


def test_exp6_has_no_skip_connect():
    for cfg in _configs("jobs/paper/exp6_no_skip.yaml"):
        assert "skip_connect" not in cfg.ops
        assert cfg.ops == tuple(op for op in nb201.OPS if op != "skip_connect")


def test_exp7_long():
    assert _constant_weights_lr("jobs/paper/exp7_long.yaml") == [3.0e-4]
    assert _values("jobs/paper/exp7_long.yaml", "alpha.lr") == [0.001]
    assert _values("jobs/paper/exp7_long.yaml", "epochs") == [500]


@pytest.mark.parametrize(
    ("job", "weights_lr"),
    [
        ("jobs/paper/table2_ss_darts.yaml", [0.003]),
        ("jobs/paper/table3_weights_lr.yaml", [0.003, 0.009, 0.015]),
    ],
)
def test_tables_ss_darts_settings_and_all_criteria(job, weights_lr):
    assert _constant_weights_lr(job) == weights_lr
    assert _values(job, "alpha.lr") == [0.001]
    # 256 for the stop methods, 128 for the paper's separate DARTS-ES runs (its Section 3)
    assert _values(job, "batch_size") == [128, 256]
    assert _values(job, "epochs") == [50]
    assert _values(job, "hessian_every") == [1]  # darts_es_paper: one eigenvalue per epoch
    spec = load_spec(REPO / job)
    labels = [parse_criterion(item).label for item in spec.criteria]
    assert labels == [c.label for c in default_criteria()]  # the paper's full comparison set


@pytest.mark.parametrize("job", ["jobs/paper/exp1_warmup.yaml", "jobs/quickstart.yaml"])
def test_dry_run_prints_each_trial_and_the_estimate(job, capsys):
    assert main(["sweep", str(REPO / job), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    trials = expand_grid(load_spec(REPO / job))
    for (_cfg, rid, point), line in zip(trials, out):
        assert line == f"{rid} " + " ".join(f"{k}={v}" for k, v in point.items())
    assert out[len(trials)] == f"{len(trials)} trials"
    hours = (
        sum(c.total_epochs for c, _rid, _p in trials)
        * load_spec(REPO / job).estimate.gpu_seconds_per_epoch
        / 3600
    )
    assert any(line.startswith("estimate:") and f"= {hours:.1f} GPU-hours" in line for line in out)


def test_dry_run_estimate_follows_the_job_key(capsys):
    job = str(REPO / "jobs/paper/exp1_warmup.yaml")
    # 15 trials, (10 + 20 + 30 + 3 x 50) x 5 = 1050 epochs; at 36 s each: 10.5 GPU-hours
    assert main(["sweep", job, "--dry-run", "--set", "estimate.gpu_seconds_per_epoch=36"]) == 0
    out = capsys.readouterr().out
    assert "15 trials, 1050 epochs in all, x 36 s/epoch = 10.5 GPU-hours" in out
    assert "resources.gpu=0.25 packs 4 trials" in out
    assert main(["sweep", job, "--dry-run", "--set", "estimate.gpu_seconds_per_epoch=0"]) == 2
    assert "estimate.gpu_seconds_per_epoch" in capsys.readouterr().err


def test_evaluate_criteria_override_takes_a_yaml_list():
    """The README (Running on a cluster) reruns the offline stage with `--set 'criteria=[...]'`."""
    spec = load_spec(
        REPO / "jobs/paper/table2_ss_darts.yaml", ["criteria=[final, {name: dartsplus_sc, k: 3}]"]
    )
    assert [parse_criterion(item).label for item in spec.criteria] == ["final", "dartsplus_sc[k=3]"]


def test_analysis_restore_prints_the_papers_steps(capsys):
    assert main(["analysis", "restore", "--lr", "0.001", "0.01"]) == 0
    rows = {}
    for line in capsys.readouterr().out.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) == 2 and cells[1].isdigit():
            rows[float(cells[0])] = int(cells[1])
    assert rows == {0.001: 34, 0.01: 44}


def test_table4_is_the_papers_darts_space_search_and_retraining(capsys):
    ((cfg, rid, _point),) = expand_grid(load_spec(REPO / TABLE4))
    assert (cfg.space, cfg.channels, cfg.layers, cfg.epochs, cfg.batch_size) == (
        "darts",
        16,
        8,
        75,
        80,
    )
    assert cfg.ops == ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
                       "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")  # fmt: skip
    assert (cfg.weights.lr, cfg.weights.schedule, cfg.weights.nesterov) == (
        0.025,
        "constant",
        False,
    )
    assert (cfg.weights.weight_decay, cfg.alpha.lr) == (3.0e-4, 1.0e-3)
    spec = load_spec(REPO / TABLE4)
    ops = {parse_criterion(c).params.get("op") for c in spec.criteria}
    assert {"sep_conv_5x5", "sep_conv_3x3", "dil_conv_3x3", "dil_conv_5x5"} <= ops
    assert (spec.evaluate.retrain.recipe, spec.evaluate.retrain.seeds) == ("drnas", (0, 1, 2))
    assert main(["sweep", str(REPO / TABLE4), "--dry-run"]) == 0
    out = capsys.readouterr().out
    # 75 x 1728 s = 36 GPU-hours of search; 1 x 5 criteria x 3 seeds x 600 epochs x 150 s = 375
    assert "1 trials, 75 epochs in all, x 1728 s/epoch = 36.0 GPU-hours" in out
    assert "15 runs x 600 epochs (drnas) x 150 s/epoch = 375.0 GPU-hours" in out
    assert "total: 411.0 GPU-hours" in out
    # the default search keys still give NAS-Bench-201 (run_ids of older jobs unchanged)
    assert expand_grid(load_spec(REPO / "jobs/paper/baseline.yaml"))[0][0].space == "nb201"


NB201_JOBS_BEFORE_SPACES = {
    "jobs/quickstart.yaml", "jobs/paper/baseline.yaml", "jobs/paper/exp1_warmup.yaml",
    "jobs/paper/exp2_alpha_l2.yaml", "jobs/paper/exp3_pretrain.yaml", "jobs/paper/exp4_alpha_lr.yaml",
    "jobs/paper/exp5_exchange.yaml", "jobs/paper/exp6_no_skip.yaml", "jobs/paper/exp7_long.yaml",
    "jobs/paper/table2_ss_darts.yaml", "jobs/paper/table3_weights_lr.yaml", "jobs/paper/table2.yaml",
}  # fmt: skip


def test_nb201_run_ids_are_those_before_search_spaces():
    """Every NAS-Bench-201 job keeps its run_ids (digest computed with main's code without
    `search.space`, at 5cc0c8b)."""
    import hashlib

    jobs = sorted(j for j in TRIALS if j in NB201_JOBS_BEFORE_SPACES)
    blob = "\n".join(
        f"{j}:{','.join(rid for _c, rid, _p in expand_grid(load_spec(REPO / j)))}" for j in jobs
    )
    assert hashlib.sha256(blob.encode()).hexdigest()[:16] == "5f7abee5cfa06cc6"
    assert [rid for _c, rid, _p in expand_grid(load_spec(REPO / "jobs/paper/baseline.yaml"))][:2] == [
        "baf6f7f28961", "a1f709f7476a",
    ]  # fmt: skip


def test_exp8_is_darts_for_500_epochs_on_the_three_1shot1_spaces(capsys):
    spec = load_spec(REPO / EXP8)
    trials = expand_grid(spec)
    assert sorted((c.space, c.seed) for c, _rid, _p in trials) == [
        (f"nb1shot1_s{k}", s) for k in (1, 2, 3) for s in SEEDS
    ]
    assert len({rid for _c, rid, _p in trials}) == 15
    for cfg, _rid, _p in trials:  # NAS-Bench-1Shot1's DARTS defaults, 500 epochs
        assert (cfg.algorithm, cfg.epochs, cfg.batch_size, cfg.channels, cfg.layers) == (
            "darts_v1", 500, 96, 16, 9,
        )  # fmt: skip
        assert (cfg.weights.lr, cfg.weights.lr_min, cfg.weights.schedule) == (
            0.025,
            0.001,
            "cosine",
        )
        assert (cfg.weights.nesterov, cfg.weights.weight_decay, cfg.weights.grad_clip) == (
            False, 3.0e-4, 5.0,
        )  # fmt: skip
        assert (cfg.alpha.lr, cfg.alpha.betas, cfg.alpha.weight_decay) == (
            3.0e-4,
            (0.5, 0.999),
            1.0e-3,
        )
        assert cfg.ops == ("maxpool3x3", "conv3x3-bn-relu", "conv1x1-bn-relu")
        assert cfg.lr_scheme == "nb1shot1"  # the preset, epochs raised to 500
    assert [parse_criterion(c).label for c in spec.criteria] == ["final", "best_valid", "oracle"]
    assert spec.evaluate.benchmark.endswith(".parquet") and spec.evaluate.retrain is None
    assert (spec.store, spec.resources.gpu) == ("/mnt/shared/runs", 0.25)
    assert main(["sweep", str(REPO / EXP8), "--dry-run"]) == 0
    out = capsys.readouterr().out
    # 15 trials x 500 epochs x 157 s (NB201's 218 s/epoch scaled by multiply-adds, job comment)
    assert "15 trials, 7500 epochs in all, x 157 s/epoch = 327.1 GPU-hours" in out
    assert "as " in out and "exp8_nb1shot1.yaml sets it" in out


def test_table4_baselines_merges_the_darts_space_rows_with_pt_and_the_papers_recipe(capsys):
    from ray_nas.algorithms import REGISTRY
    from ray_nas.config import run_id

    spec = load_spec(REPO / TABLE4_ALL)
    trials = expand_grid(spec)
    rows: dict[str, set] = {}
    for cfg, _rid, point in trials:
        rows.setdefault(point["method"]["label"], set()).add(cfg.seed)
        assert cfg.space == "darts" and cfg.dataset == "cifar10"
    assert all(seeds == {0, 1, 2} for seeds in rows.values())
    # every algorithm but the NB201-only ones has a row; darts_v1 is DARTS+PT's search
    algos = {cfg.algorithm for cfg, _r, _p in trials}
    assert algos == set(REGISTRY) - {"gaea"}, set(REGISTRY) - algos
    one = {p["method"]["label"]: c for c, _r, p in trials if c.seed == 0}
    assert (one["pc_darts"].partial_channels, one["pc_darts"].edge_normalization) == (4, True)
    assert one["pc_darts"].batch_size == 256 and one["gaea_pc_darts"].batch_size == 256
    # every search of the older baselines job is one of these (same run_id: its store is reused;
    # its R-DARTS 3e-4 point is the darts_v2 row)
    old = {rid for _c, rid, _p in expand_grid(load_spec(REPO / BASELINES))}
    assert len(old) == 30 and old <= {rid for _c, rid, _p in trials}
    assert run_id(one["darts_v2"]) in old
    labels = [parse_criterion(c).label for c in spec.criteria]
    assert "darts_pt" in labels and spec.keep_checkpoints
    r = spec.evaluate.retrain
    assert (r.recipe, list(r.seeds)) == ("drnas", [0])
    assert main(["sweep", str(REPO / TABLE4_ALL), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "darts_pt: 45 projections, 3600 tuning epochs" in out  # 80 per projection (5 x 16)
    assert one["sgas"].sgas.criterion == 1 and "none" in one["sgas"].ops  # SGAS(+PT)


def test_collapse_fixes_is_every_algorithm_by_both_schemes_with_every_selection(capsys):
    from ray_nas.algorithms import REGISTRY

    job = "jobs/beyond/collapse_fixes.yaml"
    spec = load_spec(REPO / job)
    trials = expand_grid(spec)
    cells = {(c.algorithm, p["lr_scheme"]) for c, _r, p in trials}
    # every algorithm that runs on NAS-Bench-201 (sgas: the DARTS space only)
    assert cells == {(a, s) for a in REGISTRY if a != "sgas" for s in ("nb201", "exchange")}
    assert {c.seed for c, _r, _p in trials} == set(SEEDS)
    assert {c.space for c, _r, _p in trials} == {"nb201"} and spec.keep_checkpoints
    names = {parse_criterion(c).name for c in spec.criteria}
    assert {"final", "ss_eq12", "ss_eq13", "dartsplus_sc", "dartsplus_rt", "darts_es",
            "darts_pt"} <= names  # fmt: skip
    assert {c.hessian_every for c, _r, _p in trials} == {1}  # DARTS-ES's eigenvalues
    assert main(["sweep", str(REPO / job), "--dry-run"]) == 0
    out = capsys.readouterr().out
    # 24 tuning epochs (5 x 5 - 1) and 6 edges x 5 ops measurements per projection
    assert "darts_pt: 110 projections, 2640 tuning epochs + 3300 candidate measurements" in out
