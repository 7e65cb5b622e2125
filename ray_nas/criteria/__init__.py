"""Stop criteria: which epoch of a search's trajectory to keep (the paper's Eq.11-13 and baselines).

Every criterion is a pure function `fn(traj, **params) -> StopResult` over a `Trajectory` of
epochs 0..T, catalogued in `CRITERIA`; job specs name them through `parse_criterion`. A job may
also name its own function by import path, `package.module:function` (see `resolve_criterion`):
its parameters are checked against the function's signature, and one wrapper, `apply_checked`,
enforces the shared rules below around every criterion, built-in or not.

Rules shared by all criteria :
- They choose among epochs 1..T only. Epoch 0 (before any update) is never chosen and never
  compared with: a "previous epoch" exists from epoch 2 on.
- Ties go to the earliest epoch (scores equal up to float rounding, relative 1e-12, are ties).
- A criterion that does not fire gives epoch T with `fired=False` and a note saying why; a
  trajectory with T = 0 gives epoch 0, not fired.
- A criterion reads nothing past the last epoch it is given, so online early stop (Algorithm 1)
  calls it on `traj.prefix(t)` and gets exactly what the offline stage (Algorithm 2) gets on that
  prefix. The argmax criteria take `patience` to be useful online: they fire only once the peak
  is at least `patience` epochs old.

Operation magnitude (Eq.11): m(t, o) = mean over the edges of ONE cell type of w[t, edge, o], w
the op distribution the supernet mixes with (softmax(alpha) for DARTS): `magnitudes` for one cell
type, `cell_magnitudes` for each. The criteria read the space's `magnitude_cell` unless given
`cell` (DARTS: normal, as the paper's code); the report, MLflow and the live metrics show these
same series, per cell type.
Eq.12: t* = argmax_t m(t, o_i).
Eq.13: t* = argmax_t sum_{j in S, j != i} (m(t, o_i) - m(t, o_j)) = argmax_t |S| m(t, o_i) - sum_S m(t, .).
Over the full op set sum_o m(t, o) = 1 (every edge's w sums to 1), so Eq.13 is argmax_t
(K m(t, o_i) - 1): the SAME epoch as Eq.12. The two differ only when S is a subset of the op set,
which `exclude` gives (e.g. exclude=["none"]); tests check both facts.

Modules: trajectory.py (Trajectory, StopResult and helpers), builtin.py (the built-in criteria,
pure), batch.py (the built-ins over many trials at once, `apply_many`), registry.py (the catalogue and the shared-rule checker), plugins.py (criteria named by
import path), parse.py (CriterionSpec: a criterion as a job names it, the default set per space).
"""

from ray_nas.criteria.batch import MetricsOf, Selected, apply_many  # noqa: F401
from ray_nas.criteria.builtin import (  # noqa: F401
    _MIN_INT,
    _PAPER_ES,
    PT_DARTS_NODES,
    PT_SPACES,
    _check_param,
    _check_params,
    _evaluations,
    _local_averages,
    _ratio,
    _selective_stop,
    _too_recent,
    best_valid,
    cell_magnitudes,
    darts_es,
    darts_es_paper,
    darts_pt,
    dartsplus_rt,
    dartsplus_sc,
    final,
    magnitude,
    magnitude_cell,
    magnitude_cells,
    magnitudes,
    oracle,
    pt_measurements,
    pt_schedule,
    ss_eq12,
    ss_eq13,
)
from ray_nas.criteria.parse import (  # noqa: F401
    CriterionSpec,
    default_criteria,
    default_items,
    describe_criteria,
    job_functions,
    parse_criterion,
)
from ray_nas.criteria.plugins import (  # noqa: F401
    _annotation_kind,
    _import_criterion,
    _user_info,
    resolve_criterion,
)
from ray_nas.criteria.registry import (  # noqa: F401
    _ADDED_PARAMS,
    _CELL,
    _GATE,
    _OP,
    _PATIENCE,
    CRITERIA,
    REQUIRED,
    CriterionInfo,
    _checked_result,
    _coerce,
    _fmt,
    _info,
    _jsonable,
    apply_checked,
)
from ray_nas.criteria.trajectory import (  # noqa: F401
    _NOTHING_TO_CHOOSE,
    _TIE_RTOL,
    StopResult,
    Trajectory,
    _best_epoch,
    _frozen,
    best_epoch,
    from_trial,
    no_stop,
    stop_at,
)
from ray_nas.errors import CriterionError  # noqa: F401
