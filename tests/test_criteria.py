"""Stop criteria on hand-made trajectories with known answers, plus invariants on random ones."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from ray_nas import criteria as C
from ray_nas.criteria import Trajectory
from ray_nas.spaces import nb201

OPS = nb201.OPS  # none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3
C3 = "nor_conv_3x3"


def arch_with_skips(n: int) -> str:
    return nb201.arch_string(["skip_connect"] * n + [C3] * (6 - n))


def make(
    n_epochs, ops=OPS, alpha=None, weights=None, archs=None, valid=None, eig=None, metrics=None
):
    """A trajectory of epochs 0..n_epochs-1 with only the given series set (others neutral/NaN)."""
    shape = (n_epochs, 6, len(ops))
    alpha = np.zeros(shape) if alpha is None else np.asarray(alpha, float)
    weights = np.full(shape, 1 / len(ops)) if weights is None else weights
    nan = np.full(n_epochs, np.nan)
    return Trajectory(
        ops=tuple(ops),
        edges=nb201.EDGES,
        alpha=alpha,
        weights=weights,
        archs=tuple(archs) if archs is not None else (arch_with_skips(0),) * n_epochs,
        valid_acc=nan if valid is None else valid,
        hessian_eig=nan if eig is None else eig,
        metrics=metrics or {},
    )


def from_m(rows, ops=OPS) -> Trajectory:
    """Every edge carries distribution rows[t], so the magnitude m(t, .) is rows[t] exactly."""
    m = np.asarray(rows, float)
    weights = np.repeat(m[:, None, :], 6, axis=1)
    archs = [nb201.arch_string([ops[int(np.argmax(r))]] * 6) for r in m]
    return make(len(m), ops=ops, alpha=np.log(weights + 1e-9), weights=weights, archs=archs)


U = [0.2] * 5
# m rows, columns in OPS order: none, skip, conv1x1, conv3x3, pool
PEAK = [
    U,
    [0.1, 0.2, 0.2, 0.3, 0.2],
    [0.1, 0.1, 0.2, 0.4, 0.2],
    [0.1, 0.3, 0.1, 0.35, 0.15],
    [0.1, 0.5, 0.1, 0.2, 0.1],
]
EPOCH0_MAX = [[0, 0, 0, 1, 0], *PEAK[1:]]
TIES = [
    U,
    [0.1, 0.2, 0.2, 0.4, 0.1],
    [0.1, 0.2, 0.2, 0.3, 0.2],
    [0.1, 0.2, 0.2, 0.4, 0.1],
    [0.1, 0.5, 0.1, 0.2, 0.1],
]
# conv3x3 first leads at epoch 2; its highest value (epoch 4) is where skip leads
GATED = [
    U,
    [0.2, 0.3, 0.15, 0.2, 0.15],
    [0.1, 0.2, 0.2, 0.4, 0.1],
    [0.1, 0.2, 0.2, 0.3, 0.2],
    [0, 0.5, 0, 0.45, 0.05],
]
# epoch 1 is before conv3x3 first leads (epoch 2), so it stays eligible under the gate
GATED_EARLY = [U, [0, 0.5, 0, 0.48, 0.02], *GATED[2:]]
NEVER_LEADS = [U, [0.1, 0.5, 0.1, 0.2, 0.1], [0.1, 0.4, 0.1, 0.3, 0.1], [0.1, 0.6, 0.1, 0.1, 0.1]]
# Eq.13 over ops without `none` prefers epoch 2 (none's mass counts for conv3x3), Eq.12 epoch 1
EXCL = [U, [0, 0.25, 0.2, 0.3, 0.25], [0.21, 0.2, 0.17, 0.25, 0.17]]
# over ops without `none`, conv3x3 leads at epoch 1 but not at 2; over all ops it never leads
EXCL_GATE = [U, [0.5, 0.1, 0.1, 0.2, 0.1], [0, 0.34, 0, 0.33, 0.33]]


@pytest.mark.parametrize(
    "rows, fn, params, epoch, fired",
    [
        (PEAK, C.ss_eq12, {}, 2, True),
        (PEAK, C.ss_eq12, {"gate": False}, 2, True),
        (EPOCH0_MAX, C.ss_eq12, {}, 2, True),
        (TIES, C.ss_eq12, {}, 1, True),
        (TIES, C.ss_eq13, {}, 1, True),
        (GATED, C.ss_eq12, {}, 2, True),
        (GATED, C.ss_eq12, {"gate": False}, 4, True),
        (GATED, C.ss_eq13, {}, 2, True),
        (GATED_EARLY, C.ss_eq12, {}, 1, True),
        (NEVER_LEADS, C.ss_eq12, {}, 2, True),
        (PEAK, C.ss_eq12, {"patience": 2}, 2, True),
        (PEAK, C.ss_eq12, {"patience": 3}, 4, False),
        (PEAK, C.ss_eq13, {"patience": 3}, 4, False),
        (PEAK, C.ss_eq12, {"op": "skip_connect"}, 4, True),
        (EXCL, C.ss_eq12, {}, 1, True),
        (EXCL, C.ss_eq13, {}, 1, True),
        (EXCL, C.ss_eq13, {"exclude": ("none",)}, 2, True),
        # the gate compares with all ops, as the paper's code: conv3x3 never leads, no restriction
        (EXCL_GATE, C.ss_eq13, {"exclude": ("none",)}, 2, True),
        (EXCL_GATE, C.ss_eq13, {"exclude": ("none",), "gate_all_ops": False}, 1, True),
        (EXCL_GATE, C.ss_eq13, {"exclude": ("none",), "gate": False}, 2, True),
    ],
)
def test_selective_stop(rows, fn, params, epoch, fired):
    traj = from_m(rows)
    r = fn(traj, **params)
    assert (r.epoch, r.fired) == (epoch, fired)
    assert r.arch == traj.archs[epoch]
    if not fired:
        assert "patience" in r.note


def test_selective_stop_op_missing_from_op_set_never_shifts_index():
    ops = tuple(o for o in OPS if o != C3)  # conv3x3 gone: index 3 is now avg_pool_3x3
    traj = from_m([[0.25] * 4, [0.1, 0.1, 0.1, 0.7], [0.1, 0.6, 0.1, 0.2]], ops=ops)
    for fn in (C.ss_eq12, C.ss_eq13):
        r = fn(traj, op=C3)
        assert (r.epoch, r.fired) == (2, False)
        assert C3 in r.note
    assert C.ss_eq12(traj, op="avg_pool_3x3").epoch == 1


def test_exclude_of_an_op_outside_the_op_set_is_harmless():
    ops = tuple(o for o in OPS if o != "none")
    traj = from_m([[0.25] * 4, [0.2, 0.2, 0.4, 0.2], [0.1, 0.1, 0.3, 0.5]], ops=ops)
    assert C.ss_eq13(traj, exclude=("none",)).epoch == C.ss_eq12(traj).epoch == 1


def test_magnitude_is_edge_mean_and_exclusion_keeps_columns():
    rng = np.random.default_rng(0)
    traj = Trajectory.from_alpha(rng.normal(size=(4, 6, 5)))
    m = C.magnitude(traj)
    assert m.shape == (4, 5)
    np.testing.assert_allclose(m, traj.weights.mean(axis=1))
    np.testing.assert_allclose(m.sum(axis=1), 1.0)
    mx = C.magnitude(traj, exclude=("none",))
    assert np.isnan(mx[:, 0]).all()
    np.testing.assert_array_equal(mx[:, 1:], m[:, 1:])
    with pytest.raises(ValueError, match="'none'"):
        C.magnitude(traj, exclude=("nonee",))


@pytest.mark.parametrize("seed", range(3))
def test_eq13_equals_eq12_over_the_full_op_set(seed):
    rng = np.random.default_rng(seed)
    for _ in range(40):
        ops = OPS if rng.random() < 0.7 else tuple(o for o in OPS if o != "skip_connect")
        T = int(rng.integers(1, 30))
        alpha = np.cumsum(rng.normal(scale=0.3, size=(T + 1, 6, len(ops))), axis=0)
        traj = Trajectory.from_alpha(alpha, ops=ops)
        op = str(rng.choice(ops))
        for gate in (True, False):
            assert C.ss_eq13(traj, op=op, gate=gate) == C.ss_eq12(traj, op=op, gate=gate)


def test_eq13_with_exclude_matches_the_literal_sum():
    rng = np.random.default_rng(7)
    S = [1, 2, 3, 4]  # every op but none
    for _ in range(40):
        T = int(rng.integers(1, 30))
        traj = Trajectory.from_alpha(np.cumsum(rng.normal(scale=0.3, size=(T + 1, 6, 5)), axis=0))
        m = traj.weights.mean(axis=1)
        literal = [sum(m[t, 3] - m[t, j] for j in S if j != 3) for t in range(1, T + 1)]
        expected = 1 + int(np.argmax(literal))
        assert C.ss_eq13(traj, exclude=("none",), gate=False).epoch == expected


@pytest.mark.parametrize(
    "k, epoch, fired", [(1, 2, True), (2, 3, True), (3, 4, True), (4, 5, True), (5, 5, False)]
)
def test_dartsplus_sc(k, epoch, fired):
    traj = make(6, archs=[arch_with_skips(n) for n in (6, 0, 1, 2, 3, 4)])  # epoch 0 is all skip
    r = C.dartsplus_sc(traj, k=k)
    assert (r.epoch, r.fired, r.arch) == (epoch, fired, traj.archs[epoch])


def test_dartsplus_sc_without_skip_in_op_set():
    ops = tuple(o for o in OPS if o != "skip_connect")
    r = C.dartsplus_sc(make(3, ops=ops))
    assert (r.epoch, r.fired) == (2, False)
    assert "skip_connect" in r.note


A = [0, 1, 2, 3, 4]  # ranking: pool, conv3x3, conv1x1, skip, none
B = [1, 0, 2, 3, 4]  # none and skip swapped: the learnable ops keep their order
RT_ALPHA = np.array([[row] * 6 for row in (A, A, A, B, B, B, A)], float)  # epochs 0..6


@pytest.mark.parametrize(
    "k, learnable_only, epoch, fired",
    [
        (1, False, 1, True),
        (2, False, 2, True),
        (3, False, 5, True),  # counting epoch 0 would fire at 2
        (4, False, 6, False),
        (4, True, 4, True),
        (6, True, 6, True),
        (7, True, 6, False),
    ],
)
def test_dartsplus_rt(k, learnable_only, epoch, fired):
    r = C.dartsplus_rt(make(7, alpha=RT_ALPHA), k=k, learnable_only=learnable_only)
    assert (r.epoch, r.fired) == (epoch, fired)


def test_dartsplus_rt_a_change_on_one_edge_resets_and_ties_are_stable():
    alpha = np.array([[A] * 6] * 4, float)
    alpha[2, 5] = B
    assert C.dartsplus_rt(make(4, alpha=alpha), k=2).fired is False
    assert C.dartsplus_rt(make(4, alpha=np.zeros((4, 6, 5))), k=2).epoch == 2  # all tied


def test_dartsplus_rt_learnable_only_without_learnable_ops():
    ops = ("none", "skip_connect", "avg_pool_3x3")
    r = C.dartsplus_rt(make(3, ops=ops), k=1, learnable_only=True)
    assert (r.epoch, r.fired) == (2, False)
    assert "learnable" in r.note


NAN = np.nan
# epoch 0 = -1 would count as an evaluation if epoch 0 were one
ES_DEFAULT = [-1] + [1] * 9 + [10, 10, 10]  # epochs 0..12: local_avg 2.8 at 10 vs 1 at 6
ES_GAPS = [NAN, NAN, 1, NAN, 1, NAN, 1, NAN, 2, NAN]  # evaluations at epochs 2, 4, 6, 8
S1 = {"window": 1, "delta": 1, "start_epoch": 1}


@pytest.mark.parametrize(
    "eig, params, epoch, fired",
    [
        (ES_DEFAULT, {}, 12, False),  # the rollback epoch (4) is before start_epoch 11
        # fires at epoch 10 (evaluation 9): back to the centre of the earlier window, epoch 4
        (ES_DEFAULT, {"start_epoch": 1}, 4, True),
        (ES_DEFAULT, {"start_epoch": 1, "rollback": False}, 10, True),
        (ES_DEFAULT, {"start_epoch": 5}, 5, True),  # epoch 11, rollback 5
        (ES_DEFAULT[:10] + [NAN] * 3, {"start_epoch": 1}, 12, False),  # never grows
        ([NAN] * 5, {}, 4, False),  # no Hessian recorded
        ([NAN, 1, 1.3], S1, 2, False),  # ratio must exceed factor
        ([NAN, 1, 1.31], S1, 1, True),
        ([NAN, 0, 5], S1, 1, True),  # 5 / 0 = inf > factor, as R-DARTS divides
        (ES_GAPS, S1, 6, True),
        (ES_GAPS, {**S1, "rollback": False}, 8, True),
        (ES_GAPS, {**S1, "start_epoch": 6}, 6, True),
        (ES_GAPS, {**S1, "start_epoch": 7}, 9, False),
        # partial windows at the start, as R-DARTS: evaluation 2's mean(1,1,3) vs evaluation 1's
        # mean(1,1) (two of three); rollback to the earlier window's centre, evaluation 0
        ([NAN, 1, 1, 3, 3], {"window": 3, "delta": 1, "start_epoch": 1}, 1, True),
        (
            [NAN, 1, 1, 3, 3],
            {"window": 3, "delta": 1, "start_epoch": 1, "rollback": False},
            3,
            True,
        ),
    ],
)
def test_darts_es(eig, params, epoch, fired):
    traj = make(len(eig), eig=np.array(eig, float))
    r = C.darts_es(traj, **{"ev_freq": 1, **params})  # every recorded eigenvalue
    assert (r.epoch, r.fired) == (epoch, fired)


METRIC = {"cifar10_test": np.array([99, 50, 70, NAN, 70, 60])}


@pytest.mark.parametrize(
    "valid, metrics, fn, params, epoch, fired",
    [
        ([99, 10, 30, 30, NAN, 20], None, C.best_valid, {}, 2, True),
        ([99] + [NAN] * 5, None, C.best_valid, {}, 5, False),
        (None, METRIC, C.oracle, {}, 2, True),  # epoch 0 ignored, tie 2/4 -> 2
        (None, METRIC, C.oracle, {"metric": "cifar100_test"}, 5, False),
        (None, {"cifar10_test": np.array([90] + [NAN] * 5)}, C.oracle, {}, 5, False),
        (None, None, C.final, {}, 5, True),
    ],
)
def test_baselines(valid, metrics, fn, params, epoch, fired):
    traj = make(6, valid=None if valid is None else np.array(valid, float), metrics=metrics)
    r = fn(traj, **params)
    assert (r.epoch, r.fired) == (epoch, fired)


def test_oracle_note_suggests_the_metric():
    r = C.oracle(make(6, metrics=METRIC), metric="cifar10_tst")
    assert not r.fired and "cifar10_test" in r.note


def test_T0_trajectory_gives_epoch_0_not_fired():
    traj = make(
        1,
        archs=[arch_with_skips(6)],
        valid=np.array([50.0]),
        eig=np.array([1.0]),
        metrics={"cifar10_test": np.array([90.0])},
    )
    for spec in C.default_criteria() + [C.parse_criterion({"name": "dartsplus_sc", "k": 1})]:
        r = spec.apply(traj)
        assert (r.epoch, r.fired) == (0, False), spec.label


def test_trajectory_validates_shapes_and_is_read_only():
    traj = make(3)
    with pytest.raises(ValueError):
        traj.alpha[0, 0, 0] = 1.0
    with pytest.raises(ValueError, match="valid_acc"):
        make(3, valid=np.zeros(2))
    with pytest.raises(ValueError, match="order"):
        make(3, ops=OPS[::-1])
    with pytest.raises(ValueError, match="out of range"):
        traj.prefix(3)


# ------------------------------------------------------------------ incremental == offline


def random_traj(seed: int, T: int = 24) -> Trajectory:
    """A drifting DARTS-like trajectory: rankings settle, skip grows, the Hessian sometimes jumps."""
    rng = np.random.default_rng(seed)
    drift = rng.normal(scale=0.05, size=(6, 5))
    drift[:, 1] += 0.03  # skip_connect creeps up, as in DARTS
    noise = rng.normal(scale=0.05, size=(T + 1, 6, 5)) * (rng.random((T + 1, 1, 1)) < 0.5)
    alpha = np.cumsum(drift + noise, axis=0)
    eig = np.exp(np.cumsum(rng.normal(0.05, 0.3, size=T + 1)))
    eig[rng.random(T + 1) < 0.2] = np.nan
    test_acc = rng.uniform(50, 94, size=T + 1)
    test_acc[rng.random(T + 1) < 0.2] = np.nan
    return Trajectory.from_alpha(
        alpha,
        valid_acc=rng.uniform(30, 60, size=T + 1),
        hessian_eig=eig,
        metrics={"cifar10_test": test_acc},
    )


SPECS = C.default_criteria() + [
    C.parse_criterion(item)
    for item in (
        {"name": "ss_eq12", "patience": 3, "gate": False},
        {"name": "ss_eq13", "exclude": ["none"], "patience": 5},
        {"name": "dartsplus_rt", "k": 3, "learnable_only": True},
        {"name": "darts_es", "window": 2, "delta": 1, "factor": 1.1, "rollback": False},
        {"name": "darts_es", "window": 2, "delta": 2, "factor": 1.1, "start_epoch": 10},
    )
]
FIRST_FIRE = ("dartsplus_sc", "dartsplus_rt", "darts_es", "darts_es_paper")


@pytest.mark.parametrize("seed", range(4))
def test_incremental_equals_offline_on_every_prefix(seed):
    traj = random_traj(seed)
    for spec in SPECS:
        fired_at = None
        for t in range(traj.last_epoch + 1):
            alone = Trajectory(  # the same search, had it been recorded only up to epoch t
                ops=traj.ops,
                edges=traj.edges,
                alpha=np.array(traj.alpha[: t + 1]),
                weights=np.array(traj.weights[: t + 1]),
                archs=traj.archs[: t + 1],
                valid_acc=np.array(traj.valid_acc[: t + 1]),
                hessian_eig=np.array(traj.hessian_eig[: t + 1]),
                metrics={"cifar10_test": np.array(traj.metrics["cifar10_test"][: t + 1])},
            )
            r = spec.apply(traj.prefix(t))
            assert r == spec.apply(alone), (spec.label, t)
            assert r.epoch <= t and r.arch == traj.archs[r.epoch]
            assert (r.epoch >= 1) == (t >= 1)
            if spec.name in FIRST_FIRE and r.fired and fired_at is None:
                fired_at = (t, r.epoch)
        if spec.name in FIRST_FIRE and fired_at is not None:
            # online (Algorithm 1) stops at the first firing prefix and keeps what offline keeps
            assert spec.apply(traj).epoch == fired_at[1], spec.label


def test_random_trajectories_exercise_the_criteria():
    """Guard for the test above: the random trajectories must make the criteria actually fire."""
    fired = {s.label for seed in range(4) for s in SPECS if s.apply(random_traj(seed)).fired}
    assert {"dartsplus_sc[k=2]", "dartsplus_rt[k=2]", "darts_es", "darts_es_paper"} <= fired


# ------------------------------------------------------------------ catalogue and parsing


def test_catalogue_matches_the_functions():
    for name, info in C.CRITERIA.items():
        assert info.name == name and info.fn.__name__ == name and info.doc
        sig = list(inspect.signature(info.fn).parameters.values())[1:]
        assert info.params == {p.name: p.default for p in sig}
        assert all(info.param_docs[p] for p in info.params)
        explicit = C.parse_criterion({"name": name, **info.params})  # every default is valid
        assert explicit.params == C.parse_criterion(name).params


def test_parse_labels_and_params():
    plain = C.parse_criterion("ss_eq12")
    assert plain.label == "ss_eq12"
    assert plain.params == {"op": C3, "gate": True, "patience": 0, "cell": ""}
    # `cell` came later: at its default it stays out of params_json (old selections' text)
    assert plain.params_json == '{"gate": true, "op": "nor_conv_3x3", "patience": 0}'
    spec = C.parse_criterion({"name": "ss_eq13", "op": C3, "exclude": ["none"]})
    assert spec.label == "ss_eq13[exclude=[none],op=nor_conv_3x3]"
    assert spec.params["exclude"] == ("none",)
    assert spec.params_json == (
        '{"exclude": ["none"], "gate": true, "gate_all_ops": true, "op": "nor_conv_3x3", '
        '"patience": 0}'
    )
    assert C.parse_criterion({"name": "ss_eq13", "exclude": "none"}).params["exclude"] == ("none",)
    assert C.parse_criterion({"name": "ss_eq12", "gate": False}).label == "ss_eq12[gate=false]"
    es = C.parse_criterion({"name": "darts_es", "factor": 2})
    assert es.params["factor"] == 2.0 and isinstance(es.params["factor"], float)
    traj = random_traj(0)
    assert spec.apply(traj) == C.ss_eq13(traj, op=C3, exclude=("none",))


def test_default_criteria_is_the_papers_set():
    labels = [s.label for s in C.default_criteria()]
    assert labels == [
        "final",
        "best_valid",
        "ss_eq12[op=nor_conv_3x3]",
        "ss_eq13[op=nor_conv_3x3]",
        "ss_eq13[exclude=[none],op=nor_conv_3x3]",
        "dartsplus_sc[k=2]",
        "dartsplus_sc[k=3]",
        "dartsplus_sc[k=4]",
        "dartsplus_rt[k=2]",
        "dartsplus_rt[k=3]",
        "dartsplus_rt[k=4]",
        "dartsplus_rt[k=10]",
        "darts_es",
        "darts_es_paper",
        "oracle",
    ]


def test_describe_criteria_lists_every_criterion_and_default():
    text = C.describe_criteria()
    for name, info in C.CRITERIA.items():
        assert name in text
        for key in info.params:
            assert f"  {key}=" in text
    assert "window=5" in text and "exclude=[]" in text


@pytest.mark.parametrize(
    "item, message",
    [
        ("ss_eq14", "'ss_eq12'"),
        ("dartsplus", "dartsplus_sc"),
        ({"name": "dartsplus_sc", "kk": 2}, "no parameter 'kk'; did you mean 'k'"),
        ({"name": "final", "k": 2}, "no parameter 'k'"),
        ({"name": "dartsplus_sc", "k": "2"}, "'k' expects int"),
        ({"name": "dartsplus_sc", "k": True}, "'k' expects int"),
        ({"name": "dartsplus_sc", "k": 0}, "k: must be >= 1"),
        ({"name": "darts_es", "factor": "big"}, "'factor' expects float"),
        ({"name": "ss_eq12", "gate": "yes"}, "true/false"),
        ({"name": "ss_eq12", "op": "nor_conv3x3"}, "did you mean 'nor_conv_3x3'"),
        ({"name": "ss_eq13", "exclude": ["nonee"]}, "did you mean 'none'"),
        ({"name": "ss_eq13", "exclude": [3]}, "list of op names"),
        ({"name": "ss_eq13", "exclude": [C3]}, "cannot exclude the selected op"),
        ({"op": C3}, "needs a 'name'"),
        (42, "a criterion is a name"),
    ],
)
def test_parse_errors_name_the_problem(item, message):
    with pytest.raises(ValueError) as e:
        C.parse_criterion(item)
    assert message in str(e.value)
    assert "\n" not in str(e.value)
