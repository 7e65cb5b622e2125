"""`JobResults`: the one reader of a job's store. Everything that reads a job's results (`ray-nas
evaluate`, the report, `ray-nas compare`, `ray_nas.api`, MLflow logging) takes one, so each reads
the trajectories once and applies the criteria the same way.

Each part is read or derived on first use, then kept: the trials (in grid order), the status
files, the benchmark table, the job's criteria, the grid groups, every epoch's benchmark score,
the selections and their summary. Selections are computed afresh from the trajectories (the
criteria are pure and cheap, so they always match the store, even while a sweep runs), scored by
the benchmark table; retrained accuracies (`retrain_acc`) come from `selections.parquet`, on the
rows whose (run_id, label, arch) still match: only `ray-nas evaluate` retrains.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import pandas as pd

from ray_nas import criteria as crit
from ray_nas import store
from ray_nas.config import JobSpec
from ray_nas.offline import pt
from ray_nas.offline import select as sl
from ray_nas.offline import summary as sm


class JobResults:
    """One job's store, read lazily and once. Nothing here writes to the store."""

    def __init__(self, spec: JobSpec):
        self.spec = spec

    @classmethod
    def read(cls, spec: JobSpec) -> JobResults:
        """The job's results with its trajectories read now (the rest on first use)."""
        res = cls(spec)
        _ = res.trials  # the store is read here, once
        return res

    # -------------------------------------------------------------------------------- read

    @functools.cached_property
    def _read(self) -> tuple[list[store.TrialData], dict[str, str]]:
        trials, problems = self.read_state.trials, self.read_state.problems
        trials.sort(key=lambda t: (sl.grid_rank(self.spec, t.config), t.run_id))
        return trials, problems

    @functools.cached_property
    def read_state(self) -> store.JobRead:
        """How the trajectories were read (store.read_job_state): which came from the job's
        compacted copy, whether it is stale, why it was ignored (`note`)."""
        return store.read_job_state(self.spec.job_dir)

    @property
    def trials(self) -> list[store.TrialData]:
        """Every readable trial, in grid order (keys and values as the job writes them), then
        run_id."""
        return self._read[0]

    @property
    def problems(self) -> dict[str, str]:
        """run_id -> why its trajectory could not be read (skipped everywhere)."""
        return self._read[1]

    @functools.cached_property
    def status(self) -> pd.DataFrame:
        """One row per trial with a status file: status, epochs_done, stop_epoch, stop_reason,
        error, config columns (empty when the job has none)."""
        return store.read_status(self.spec.job_dir)

    @functools.cached_property
    def running(self) -> set[str]:
        """run_ids still running or failed (their selections are marked `in_progress`)."""
        return sl.in_progress(self.status)

    @functools.cached_property
    def benchmark(self) -> pd.DataFrame | None:
        """The job's benchmark table (`evaluate.benchmark`), or None."""
        return sl.load_benchmark(self.spec)

    @functools.cached_property
    def stored(self) -> pd.DataFrame | None:
        """The job's `selections.parquet` as `ray-nas evaluate` last wrote it, or None."""
        path = f"{self.spec.job_dir}/selections.parquet"
        return store.read_frame(path) if store.exists(path) else None

    @functools.cached_property
    def pt_cache(self) -> pd.DataFrame | None:
        """The job's pt.parquet (darts_pt's projections, `ray-nas evaluate` writes it), or None."""
        return pt.read_cache(self.spec.job_dir)

    # -------------------------------------------------------------------------------- derived

    @functools.cached_property
    def metric(self) -> str | None:
        """The job's benchmark metric (evaluate.metric, or the `search` data set's test one)."""
        return sl.main_metric(self.spec)

    @functools.cached_property
    def own_metric(self) -> dict[str, str | None]:
        """run_id -> the benchmark metric that scores that trial (its own data set's)."""
        return {t.run_id: sl.trial_metric(self.spec, t.config) for t in self.trials}

    @functools.cached_property
    def criteria(self) -> list[crit.CriterionSpec]:
        """The job's criteria in job order (the paper's set when it lists none)."""
        return sl.job_criteria(self.spec, self.metric)

    def criteria_of(self, items: Sequence | None) -> list[crit.CriterionSpec]:
        """`items` (criteria as a job names them, or CriterionSpecs) parsed, a plain `oracle` set
        to the job's metric; the job's own criteria when None."""
        if items is None:
            return self.criteria
        specs = [i if isinstance(i, crit.CriterionSpec) else crit.parse_criterion(i) for i in items]
        return sl.with_oracle_metric(specs, self.metric)

    @functools.cached_property
    def groups(self) -> dict[str, str]:
        """run_id -> grid group label (every grid key but seed, e.g. "lr_scheme=nb201")."""
        keys = sl.grid_group_keys(self.spec)
        return {t.run_id: sl.group_label(t.config, keys, self.spec) for t in self.trials}

    @functools.cached_property
    def _scores(self):
        """(scores, per_epoch) of benchmark_scores, or (None, None) without a table or trials."""
        if self.benchmark is None or not self.trials:
            return None, None
        return sl.benchmark_scores(
            self.trials, self.benchmark, pt.extra_archs(self.trials, self.pt_cache)
        )

    @property
    def per_epoch(self) -> sl.PerEpoch | None:
        """per_epoch(trial) -> {metric: [T+1] benchmark score of each epoch's arch}; None
        without a table."""
        return self._scores[1]

    def scored(self, specs: list[crit.CriterionSpec]) -> pd.DataFrame:
        """Selections of `specs` (one row per trial and criterion, SELECTION_COLUMNS) with the
        benchmark's scores of each selected arch: what `ray-nas evaluate` has before retraining."""
        scores, per_epoch = self._scores
        own = self.own_metric
        sel = sl.select(self.trials, specs, per_epoch, self.running, lambda t: own[t.run_id])
        if pt.stage_specs(specs):  # darts_pt: its rows from the stage's cache
            sel = _concat(sel, pt.pt_rows(self.trials, specs, self.pt_cache))
        if scores is None:
            return sel
        return sl.add_scores(sel, {t.run_id: t.space for t in self.trials}, scores)

    @functools.cached_property
    def fresh(self) -> pd.DataFrame:
        """scored(job criteria): the job's selections before retraining."""
        return self.scored(self.criteria)

    def select(
        self, specs: list[crit.CriterionSpec] | None = None, notes: list[str] | None = None
    ) -> pd.DataFrame:
        """Selections of `specs` (default: the job's criteria, i.e. `selections`) with every
        score: the benchmark's, and the retrained ones kept in selections.parquet where (run_id,
        label, arch) still match (a note appended to `notes` when some rows have none)."""
        notes = [] if notes is None else notes
        if specs is None:
            notes.extend(self.notes)
            return self.selections
        return sl.stored_scores(self.scored(specs), self.stored, notes)

    @functools.cached_property
    def _selected(self) -> tuple[pd.DataFrame, list[str]]:
        notes: list[str] = []
        return sl.stored_scores(self.fresh, self.stored, notes), notes

    @property
    def selections(self) -> pd.DataFrame:
        """The job's selections with every score (see select). Shared: copy before changing."""
        return self._selected[0]

    @property
    def notes(self) -> list[str]:
        """What a reader should know about the selections (retrained scores missing)."""
        return self._selected[1]

    def use_selections(self, sel: pd.DataFrame, stored: pd.DataFrame | None = None) -> None:
        """Take `sel` as the job's selections and `stored` (default `sel`) as what
        selections.parquet holds (`ray-nas evaluate` wrote it, retrained where needed): what is
        derived from them is derived again."""
        for key in ("summary", "score"):
            self.__dict__.pop(key, None)
        self.__dict__["_selected"] = (sel, [])
        self.__dict__["stored"] = sel if stored is None else stored

    @functools.cached_property
    def score(self) -> str | None:
        """The column that scores the selections: the benchmark metric where the table gave any
        score, else `retrain_acc` where retrained, else None."""
        return sl.score_column(self.selections, self.metric)

    def summarize(self, sel: pd.DataFrame, specs: list[crit.CriterionSpec]) -> pd.DataFrame:
        """summary.summarize of `sel` (selections of `specs`), scored by its score column."""
        column = sl.score_column(sel, self.metric)
        scores = sl.row_scores(sel, column, self.own_metric)
        return sm.summarize(sel, self.groups, [c.label for c in specs], scores)

    @functools.cached_property
    def summary(self) -> pd.DataFrame:
        """Rows (group, criterion label): n, mean/std (ddof=0) of the score over seeds, mean stop
        epoch, fire count (summary.summarize)."""
        return self.summarize(self.selections, self.criteria)

    @property
    def summary_text(self) -> str:
        """The summary as the text table `ray-nas evaluate` prints."""
        return sm.format_summary(self.summary, sm.shown_metric(self.score, self.own_metric))


def _concat(sel: pd.DataFrame, more: pd.DataFrame) -> pd.DataFrame:
    """`sel` then the rows of `more` (same columns), the dtypes of `sel` kept."""
    if not len(more):
        return sel
    if not len(sel):
        return more
    return pd.concat([sel, more], ignore_index=True).astype(sel.dtypes.to_dict())
