"""The interface of a search space unit.

A space says what the architecture parameter's rows and columns mean and how an op distribution
becomes an architecture; the loop, the store, the criteria and the report ask it instead of
importing a particular space's names. Rows of the parameter [R, K]: the cells `cell_types` in
order, each with the edges `edges` (R = len(cell_types) * len(edges)); columns: the search's ops,
a subset of `ops` in that order. Pure (numpy only); the networks are built on demand.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np


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
    learnable_ops: ClassVar[frozenset[str]] = frozenset()
    """ops with weights (DARTS+ rt_k's learnable_only)"""
    benchmark_key_column: ClassVar[str] = ""
    """the column of a benchmark table the space's keys match ("" = no benchmark)"""

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
            close = difflib.get_close_matches(str(bad[0]), self.ops, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
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

    def connection_rows(self) -> tuple[tuple[str, str, str], ...]:
        """(cell, edge, op) labels of further architecture weights that are not op weights
        (NAS-Bench-1Shot1's connection weights), stored after the op rows; () for most spaces."""
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

    def build_supernet(self, cfg: Any, num_classes: int):
        """The search network of a search config (spec.SearchConfig): a torch module with an
        `alpha` parameter [R, K], `weight_parameters()`, and forward(x, alpha=None, weights=None)."""
        raise NotImplementedError
