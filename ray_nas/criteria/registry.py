"""The catalogue of built-in criteria (`CRITERIA`: function, parameters, docs) and the one wrapper
that enforces the shared rules around every criterion (`apply_checked`).
"""

from __future__ import annotations

import dataclasses
import inspect
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ray_nas.criteria.builtin import (
    best_valid,
    darts_es,
    darts_es_paper,
    darts_pt,
    dartsplus_rt,
    dartsplus_sc,
    final,
    oracle,
    ss_eq12,
    ss_eq13,
)
from ray_nas.criteria.trajectory import StopResult, Trajectory
from ray_nas.errors import CriterionError, first_line

# ---------------------------------------------------------------- catalogue


@dataclass(frozen=True)
class CriterionInfo:
    """One catalogue entry: a criterion function and its metadata."""

    name: str
    fn: Callable[..., StopResult]
    doc: str
    """one line: what epoch it chooses"""
    params: dict[str, Any]
    """parameter name -> default (REQUIRED when the function gives none), read from fn's signature"""
    param_docs: dict[str, str]
    """parameter name -> one line"""
    kinds: dict[str, Any] = field(default_factory=dict)
    """parameter name -> the type a value must have (None: any); empty = the type of the default"""
    builtin: bool = True
    """False for a function named by import path in a job"""
    stage: bool = False
    """True for a selection that is not a function of the trajectory (darts_pt: it projects the
    trial's final supernet in a stage of `ray-nas evaluate`; its rows come from that stage's
    results, ray_nas.offline.pt)"""

    @property
    def where(self) -> str:
        """The function as `module:qualname` (for error messages)."""
        return f"{self.fn.__module__}:{getattr(self.fn, '__qualname__', self.name)}"

    def kind(self, key: str) -> Any:
        if key in self.kinds:
            return self.kinds[key]
        default = self.params[key]
        return None if default is REQUIRED or default is None else type(default)


#: The default of a user criterion's parameter that has none: the job must give it.
REQUIRED = inspect.Parameter.empty


def _info(fn: Callable[..., StopResult], doc: str, **param_docs: str) -> CriterionInfo:
    sig = list(inspect.signature(fn).parameters.values())[1:]  # after traj
    params = {p.name: p.default for p in sig}
    if set(params) != set(param_docs):
        raise TypeError(f"{fn.__name__}: document exactly its parameters {sorted(params)}")
    return CriterionInfo(fn.__name__, fn, doc, params, {p: param_docs[p] for p in params})


_OP = "the op o_i whose magnitude peak is sought (by name)"
_CELL = "the cell type whose magnitudes are read (normal | reduce on DARTS); empty = the space's (normal)"
_GATE = (
    "after op first leads m(t, .), only epochs where it leads are eligible (the paper's "
    "NAS-Bench-201 code; its DARTS-space code has no gate: gate false)"
)
_PATIENCE = (
    "fire only when the peak is >= this many epochs before the last (online use); 0 = always"
)

#: Every criterion by name.
CRITERIA: dict[str, CriterionInfo] = {
    c.name: c
    for c in [
        _info(final, "the last epoch T: no early stop"),
        _info(best_valid, "the best supernet search-valid accuracy"),
        _info(
            ss_eq12,
            "Eq.12 selective stop: peak of m(t, op)",
            op=_OP,
            gate=_GATE,
            patience=_PATIENCE,
            cell=_CELL,
        ),
        _info(
            ss_eq13,
            "Eq.13 selective stop: peak of sum_j (m(t, op) - m(t, j)); = Eq.12 over the full op set",
            op=_OP,
            exclude="op names left out of the sum, e.g. [none]",
            gate=_GATE,
            patience=_PATIENCE,
            gate_all_ops="the gate compares with every op, excluded ones too (the paper's code); "
            "false = only with the ops not excluded",
            cell=_CELL,
        ),
        _info(
            dartsplus_sc,
            "DARTS+ sc_k: first genotype with >= k skip_connect edges",
            k="skip_connect edges",
        ),
        _info(
            dartsplus_rt,
            "DARTS+ rt_k: first epoch where every edge's alpha ranking has held k epochs",
            k="epochs the ranking must hold (counter is 1 at epoch 1)",
            learnable_only="rank only the ops with weights (NB201: nor_conv_1x1/3x3; DARTS+ paper)",
        ),
        _info(
            darts_es,
            "DARTS-ES as R-DARTS ran it (automl/RobustDARTS EVLocalAvg, eigenvalue every 2 "
            "epochs): Hessian eigenvalue local average grows by > factor. Epochs here count from "
            "1 (R-DARTS's epoch e is our e + 1): its es_start_epoch 10 is start_epoch 11, its "
            "evaluations at e = 0, 2, 4, ... are our epochs 1, 3, 5, ...; the defaults reproduce "
            "it exactly with hessian_every 1 (with hessian_every 2: ev_freq 1, start_epoch 12, "
            "one epoch later)",
            window="evaluations per local average (partial windows at the start, as R-DARTS)",
            delta="evaluations between the two local averages compared",
            factor="growth ratio that stops the search",
            start_epoch="the rollback epoch (centre of the earlier window) must be >= this "
            "(our numbering: R-DARTS's es_start_epoch + 1)",
            rollback="return the genotype at the centre of the earlier window (R-DARTS) "
            "instead of the current one",
            ev_freq="use every ev_freq-th epoch's eigenvalue from the first recorded one on "
            "(R-DARTS's report_freq_hessian; 1 = every recorded one)",
        ),
        _info(
            darts_es_paper,
            "DARTS-ES as the paper's code ran it (chaoji90/Selective-Stop DARTS-V1-ES.py): "
            "EVLocalAvg(5, ev_freq=2) on one eigenvalue per epoch, the current genotype, "
            "fires at epochs 13-49 only",
        ),
        dataclasses.replace(
            _info(
                darts_pt,
                "DARTS-PT (ruocwang/darts-pt): perturbation-based selection from the trial's final "
                "supernet (needs keep_checkpoints: true); on each edge in turn the op whose "
                "removal hurts search-valid accuracy most is kept, with fine-tuning between "
                "decisions; on the DARTS space each node then keeps the 2 input edges whose "
                "removal hurts most. A stage of `ray-nas evaluate`, cached in pt.parquet",
                tune_epochs="fine-tuning epochs between two decisions (upstream --proj_intv, 5 "
                "in its scripts); 0 = decide every edge without tuning",
                edge_decision="which undecided edge is decided next: random (upstream; seeded "
                "by the trial's seed) | fixed (row order)",
                crit="acc: keep the op whose removal lowers accuracy most (upstream default) | "
                "loss: whose removal raises the loss most",
                valid_batches="search-valid batches each candidate is measured on; 0 = the "
                "split, capped at search.steps_per_epoch where the search caps its own "
                "evaluation (upstream: the whole split)",
            ),
            stage=True,
        ),
        _info(
            oracle,
            "the best benchmark score over all epochs (upper bound)",
            metric="benchmark metric, e.g. cifar10_test",
        ),
    ]
}


def apply_checked(
    info: CriterionInfo, label: str, traj: Trajectory, params: Mapping[str, Any]
) -> StopResult:
    """Call a criterion and enforce the shared rules on what it returns.

    Raises CriterionError (one line naming the function) when it raises (SystemExit and
    KeyboardInterrupt included), returns something other
    than a StopResult, an epoch outside 1..T (0 only when T = 0), a not-fired epoch other than T,
    or an arch other than the one recorded at its epoch. Non-finite epochs are ignored: the
    criterion sees `traj.finite_prefix()` (a diverged search's epochs before the divergence).
    """
    who = f"criterion {label!r}" + ("" if info.where == info.name else f" ({info.where})")
    if info.stage:
        raise CriterionError(
            f"{who} is a selection stage of `ray-nas evaluate` (it projects the trial's final "
            "supernet), not a function of a trajectory"
        )
    traj = traj.finite_prefix()
    try:
        r = info.fn(traj, **params)
    except Exception as e:
        raise CriterionError(f"{who} raised {type(e).__name__}: {first_line(e, 300)}") from e
    except SystemExit as e:  # sys.exit() in a user's function: never a silent end of the command
        raise CriterionError(
            f"{who} called sys.exit({e.code!r}); a criterion returns a StopResult (raise an "
            "exception to report a problem)"
        ) from None
    except KeyboardInterrupt:
        raise CriterionError(f"{who} was interrupted (KeyboardInterrupt) while it ran") from None
    return _checked_result(r, who, traj)


def _checked_result(r: Any, who: str, traj: Trajectory) -> StopResult:
    T = traj.last_epoch
    if not isinstance(r, StopResult):
        raise CriterionError(
            f"{who} returned {type(r).__name__} {repr(r)[:60]}, not a StopResult "
            "(build one with criteria.stop_at(traj, epoch) or criteria.no_stop(traj, note))"
        )
    epoch, fired = r.epoch, r.fired
    if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral):
        raise CriterionError(f"{who} returned epoch {epoch!r}; an epoch is an int in 1..{T}")
    if not isinstance(fired, (bool, np.bool_)):
        raise CriterionError(f"{who} returned fired={fired!r}; expected true or false")
    if T == 0 and (epoch != 0 or fired):
        raise CriterionError(
            f"{who} returned epoch {epoch} fired={bool(fired)} on a trajectory with only epoch 0; "
            "the rule: epoch 0, not fired"
        )
    if T > 0 and not 1 <= epoch <= T:
        raise CriterionError(
            f"{who} returned epoch {epoch}; a criterion chooses among epochs 1..{T} "
            "(epoch 0 is before any update)"
        )
    if not fired and epoch != T:
        raise CriterionError(
            f"{who} did not fire but returned epoch {epoch}; one that does not fire gives the "
            f"last epoch ({T}): return criteria.no_stop(traj, note)"
        )
    if r.arch != traj.archs[epoch]:
        raise CriterionError(
            f"{who} returned arch {r.arch!r} for epoch {epoch}, which recorded {traj.archs[epoch]!r}"
        )
    return StopResult(int(epoch), bool(fired), r.arch, str(r.note))


#: parameters added after stores existed -> their default (left out of params_json at it)
_ADDED_PARAMS: dict[str, Any] = {"cell": ""}


def _jsonable(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def _fmt(v: Any) -> str:
    """Label spelling of a value: [a,b] for lists, true/false for bools."""
    if isinstance(v, tuple):
        return "[" + ",".join(map(str, v)) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _coerce(name: str, key: str, value: Any, kind: Any) -> Any:
    """`value` as type `kind` (None: anything), or ValueError naming the criterion and parameter."""
    ok = True
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind is str:
        ok = isinstance(value, str)
    elif kind in (tuple, list):  # a list of names (op names for the built-ins)
        value = (value,) if isinstance(value, str) else value
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
        value = tuple(value) if ok else value
    if not ok:
        want = {tuple: "a list of op names", list: "a list of strings", bool: "true/false"}
        raise ValueError(
            f"criterion {name!r}: parameter {key!r} expects "
            f"{want.get(kind, getattr(kind, '__name__', kind))}, got {value!r}"
        )
    return value
