"""The interface of a search space unit.

A space says what the architecture parameter's rows and columns mean and how an op distribution
becomes an architecture; the loop, the store, the criteria and the report ask it instead of
importing a particular space's names. Rows of the parameter [R, K]: the cells `cell_types` in
order, each with the edges `edges` (R = len(cell_types) * len(edges)); columns: the search's ops,
a subset of `ops` in that order. Pure (numpy only); the networks are built on demand.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from ray_nas.errors import did_you_mean
from ray_nas.spaces.recipes import RetrainResult, named_recipe

#: the one qualitative palette ops are drawn in (matplotlib's tab10, ordered so that
#: NAS-Bench-201's ops keep the colours the report always gave them): a space's ops take its
#: colours in the space's op order (`Space.op_colors`), cycling after 10
PALETTE: tuple[str, ...] = (
    "#7f7f7f",
    "#d62728",
    "#1f77b4",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#17becf",
)


class Space:
    """One search space. Subclasses set the class attributes and override the methods."""

    name: ClassVar[str] = ""
    ops: ClassVar[tuple[str, ...]] = ()
    """every candidate op of the space, in its column order"""
    cell_types: ClassVar[tuple[str, ...]] = ()
    """the cell types with their own parameter rows, in row order (alphas.cell)"""
    edges: ClassVar[tuple[str, ...]] = ()
    """the edges of one cell, in row order (alphas.edge)"""
    magnitude_cell: ClassVar[str] = ""
    """the cell whose op magnitudes the criteria read unless told otherwise"""
    criteria_ops: ClassVar[tuple[str, ...]] = ()
    """the ops whose magnitude the default selective stops read (ss_eq12 on each, ss_eq13 on the
    first): the space's main parametric ops, as the paper chose them"""
    learnable_ops: ClassVar[frozenset[str]] = frozenset()
    """ops with weights (DARTS+ rt_k's learnable_only)"""
    benchmark_key_column: ClassVar[str] = ""
    """the column of a benchmark table the space's keys match ("" = no benchmark)"""
    size_key: ClassVar[str] = "layers"
    """the search key that sizes its supernet: `layers` (cells in all) or `cells` (per stage)"""
    default_layers: ClassVar[int | None] = None
    """`search.layers` when a job leaves it unset (None: SearchConfig's default, 8)"""
    min_layers: ClassVar[int] = 1
    """the fewest `search.layers` its search network can be built with"""
    report_sections: ClassVar[tuple[str, ...]] = ()
    """the report's space-specific sections for its trials: "table4" (retrained genotypes,
    the paper's Table 4 layout), "figure4" (benchmark accuracy and op magnitudes per epoch)"""
    export_format: ClassVar[str] = ""
    """the format `ray-nas export` writes its genotypes in ("darts": DARTS's genotypes.py);
    "" = not exportable"""

    def export_text(self, job: str, entries: Sequence[tuple[str, str, str]]) -> str:
        """The file `ray-nas export` writes in `export_format`: per entry (python name, genotype
        text, comment) one genotype; `job` names the job. ValueError where not exportable."""
        raise ValueError(f"the {self.name} space has no export format (`ray-nas export`)")

    @property
    def has_benchmark(self) -> bool:
        """Whether a tabular benchmark can score its genotypes (`benchmark_key_column` is set)."""
        return bool(self.benchmark_key_column)

    def rows(self) -> tuple[tuple[str, str], ...]:
        """(cell, edge) per row of the architecture parameter."""
        return tuple((c, e) for c in self.cell_types for e in self.edges)

    def validate_ops(self, ops: Sequence[str]) -> tuple[str, ...]:
        """`ops` in the space's column order; ValueError names an unknown, duplicate or empty set."""
        ops = list(ops)
        bad = [o for o in ops if o not in self.ops]
        if bad:
            hint = did_you_mean(bad[0], self.ops)
            raise ValueError(
                f"unknown {self.name} op {bad[0]!r}{hint} valid ops: {', '.join(self.ops)}"
            )
        if len(set(ops)) != len(ops):
            raise ValueError(f"duplicate op in {ops}")
        if not ops:
            raise ValueError(f"op set is empty; choose from: {', '.join(self.ops)}")
        return tuple(o for o in self.ops if o in ops)

    def genotype_text(self, weights: np.ndarray, ops: Sequence[str]) -> str:
        """The architecture of an op distribution [R, K] as the space's text (epochs.arch)."""
        raise NotImplementedError

    def check_genotype(self, text: str) -> str:
        """The text itself when it is a genotype of this space; ValueError (one line) otherwise."""
        raise NotImplementedError

    def genotype_key(self, text: str) -> str:
        """A canonical key of the architecture (equal for two texts of one architecture)."""
        return self.check_genotype(text)

    def benchmark_key(self, text: str) -> str:
        """The value of `benchmark_key_column` that the genotype `text` has in a benchmark table."""
        raise NotImplementedError(f"search space {self.name!r} has no tabular benchmark")

    def connection_rows(self, cfg: Any = None) -> tuple[tuple[str, str, str], ...]:
        """(cell, edge, op) labels of further architecture weights that are not op weights
        (NAS-Bench-1Shot1's connection weights; PC-DARTS's edge-normalisation betas where the
        search config `cfg` turns them on), stored after the op rows; () for most spaces."""
        return ()

    def brief(self, text: str) -> str:
        """The genotype on one log line."""
        return text

    def arch_of(self, model, weights) -> str:
        """The genotype text the loop records for a supernet mixing with `weights` [R, K] (a torch
        tensor, the recorded op distribution)."""
        return self.genotype_text(weights.detach().float().cpu().numpy(), model.op_names)

    def skip_count(self, text: str, cell: str) -> int:
        """skip_connect edges of `cell` in the genotype (DARTS+ sc_k)."""
        raise NotImplementedError

    def skips(self, text: str) -> int:
        """skip_connect edges of the genotype in `magnitude_cell`, the cell the criteria read
        (DARTS+ sc_k counts these; the report and Tune's progress table show them)."""
        return self.skip_count(text, self.magnitude_cell)

    def op_colors(self) -> dict[str, str]:
        """op -> its colour in charts ("#rrggbb"): `PALETTE` in the space's op order, so an op
        has one colour in every chart of the space, whatever the search's op subset."""
        return {op: PALETTE[i % len(PALETTE)] for i, op in enumerate(self.ops)}

    def build_supernet(self, cfg: Any, num_classes: int):
        """The search network of a search config (spec.SearchConfig): a torch module with an
        `alpha` parameter [R, K], `weight_parameters()`, and forward(x, alpha=None, weights=None)."""
        raise NotImplementedError

    # --------------------------------------------------------------------------------------
    # the search settings it supports

    impls: ClassVar[tuple[str, ...]] = ("fast",)
    """the values of search.impl its supernet builder honours (the first: the default)"""

    # --------------------------------------------------------------------------------------
    # evaluation without a benchmark: retraining a genotype from scratch (ray_nas.offline.retrain asks
    # these; a space without recipes cannot retrain)

    recipes: ClassVar[Mapping[str, Any]] = {}
    """recipe name -> retraining recipe: a frozen dataclass with `epochs`, `steps_per_epoch` and
    `key()` (a stable string, the cache key's recipe part)"""
    default_recipe: ClassVar[str] = ""
    """the recipe when evaluate.retrain.recipe is not given"""
    retrain_cache: ClassVar[str] = ""
    """the retraining cache's file name under the job's folder ("": retrain_<name>.parquet)"""
    retrain_columns: ClassVar[Mapping[str, str] | None] = None
    """recipes.RETRAIN_FIELDS -> the cache's column names, in file order (None: every field under
    its own name); a space may store a subset (rows read back get seed 0, genotype =
    genotype_key, recipe "" and params_m NaN for the fields it lacks)"""

    def retrain_recipe(self, cfg: Any) -> tuple[str, Any]:
        """(name, recipe) that `evaluate.retrain` (spec.RetrainConfig) names for this space: its
        `recipe` (default `default_recipe`) with `overrides`, `steps_per_epoch` capping an
        uncapped recipe. ValueError (one line) names a bad recipe, key or value."""
        name = cfg.recipe or self.default_recipe
        rec = named_recipe(self.recipes, name, cfg.overrides)
        if cfg.steps_per_epoch and rec.steps_per_epoch is None:
            rec = dataclasses.replace(rec, steps_per_epoch=cfg.steps_per_epoch)
        return name, rec

    def retrain_seeds(self, cfg: Any) -> tuple[int, ...]:
        """The seeds each genotype is retrained with (one run each): evaluate.retrain.seeds."""
        return tuple(cfg.seeds)

    def check_retrain(self, rec: Any, dataset: str, image_size: int) -> None:
        """ValueError when `rec` cannot train on `dataset` (images image_size x image_size
        pixels): one line that starts with the key under evaluate.retrain and says what would be
        valid; the job's validation calls it before any work."""

    def build_eval_network(self, genotype_text: str, rec: Any, num_classes: int):
        """The torch module that `retrain` trains for a genotype under `rec`."""
        raise NotImplementedError(f"the {self.name} space has no evaluation network")

    def retrain(
        self, genotype_text: str, rec: Any, dataset: str, data_root: str, seed: int,
        checkpoint: Any = None, device: str = "cpu", log: Callable[[str], None] = print,
        on_epoch: Callable[[int], None] | None = None,
    ) -> RetrainResult:  # fmt: skip
        """Train the genotype's evaluation network from scratch under `rec` on the data set's
        training split and score it on its test split. `checkpoint` (trial.FileCheckpoint or
        None): saved after every epoch and resumed from where the space supports it;
        `on_epoch(epoch)` runs after each epoch (and its checkpoint)."""
        raise NotImplementedError(f"the {self.name} space cannot retrain")
