"""The DARTS CIFAR-10 cell space (Liu et al. 2019), pure part: ops, edges, the genotype rule and
DARTS's `Genotype(...)` text. No torch here; the networks live in ray_nas.spaces.darts.network and
the retraining recipes in ray_nas.spaces.darts.train.

A cell has two inputs (0 = output of cell k-2, 1 = of cell k-1) and four intermediate nodes
2..5; node n receives one mixed edge from every earlier state, 2+3+4+5 = 14 edges. Edge rows
follow DARTS's order (`EDGES`): node 2 <- 0, 1; node 3 <- 0, 1, 2; ... The search network has one
architecture parameter [28, K]: rows 0..13 the normal cell's edges, rows 14..27 the reduction
cell's (`CELL_TYPES` order), so a search algorithm sees one [E, K] matrix like NAS-Bench-201's.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: DARTS's op list, in its column order (cnn/genotypes.py PRIMITIVES)
OPS: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
#: the 7 ops without `none` that SS-DARTS (the paper's code) and DrNAS search over
PAPER_OPS: tuple[str, ...] = OPS[1:]
CELL_TYPES: tuple[str, ...] = ("normal", "reduce")
STEPS = 4
"""intermediate nodes per cell"""
#: (node, input) per edge row, DARTS's order; inputs 0/1 are the cell inputs, 2..5 earlier nodes
EDGE_PAIRS: tuple[tuple[int, int], ...] = tuple(
    (2 + i, j) for i in range(STEPS) for j in range(2 + i)
)
EDGES: tuple[str, ...] = tuple(f"{n}<-{j}" for n, j in EDGE_PAIRS)
CONCAT: tuple[int, ...] = tuple(range(2, 2 + STEPS))
"""the nodes concatenated into the cell output"""

Cell = tuple[tuple[str, int], ...]
"""8 (op, input) pairs, 2 per node in node order (strongest edge first, as DARTS appends them)"""


class GenotypeError(ValueError):
    """A genotype text or op list that is not a valid DARTS-space genotype; one line."""


@dataclass(frozen=True)
class Genotype:
    """One architecture of the space: a normal and a reduction cell."""

    normal: Cell
    reduce: Cell
    normal_concat: tuple[int, ...] = CONCAT
    reduce_concat: tuple[int, ...] = CONCAT

    def text(self) -> str:
        """DARTS's own repr: `Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=[2, 3,
        4, 5], reduce=[...], reduce_concat=[2, 3, 4, 5])`; `parse_genotype` reads it back."""

        def pairs(cell: Cell) -> str:
            return "[" + ", ".join(f"({op!r}, {j})" for op, j in cell) + "]"

        return (
            f"Genotype(normal={pairs(self.normal)}, normal_concat={list(self.normal_concat)}, "
            f"reduce={pairs(self.reduce)}, reduce_concat={list(self.reduce_concat)})"
        )

    def key(self) -> str:
        """A canonical key: the two pairs of each node sorted by input (DARTS orders them by
        strength, so two texts of one architecture can differ), e.g. `n:0.sep_conv_3x3,1.sep_...|r:...`."""

        def canon(cell: Cell) -> str:
            nodes = [
                sorted(cell[2 * i : 2 * i + 2], key=lambda p: (p[1], p[0])) for i in range(STEPS)
            ]
            return ";".join(",".join(f"{j}.{op}" for op, j in node) for node in nodes)

        return f"n:{canon(self.normal)}|r:{canon(self.reduce)}"

    def cell(self, cell_type: str) -> Cell:
        """The pairs of `normal` or `reduce`."""
        return self.normal if cell_type == "normal" else self.reduce


def check_ops(ops: Sequence[str]) -> tuple[str, ...]:
    """The op subset as a tuple in DARTS's column order; a GenotypeError names a bad op."""
    bad = [o for o in ops if o not in OPS]
    if bad:
        raise GenotypeError(f"unknown DARTS op {bad[0]!r}; valid ops: {', '.join(OPS)}")
    if len(set(ops)) != len(ops):
        raise GenotypeError(f"DARTS ops listed twice in {list(ops)}")
    if not [o for o in ops if o != "none"]:
        raise GenotypeError("the DARTS space needs at least one op besides `none`")
    return tuple(o for o in OPS if o in ops)


def derive_cell(weights: np.ndarray, ops: Sequence[str]) -> Cell:
    """DARTS's genotype rule for one cell.

    weights: [14, K] op distribution per edge (rows `EDGES`, columns `ops`). Per node, its
    incoming edges are ranked by their largest non-`none` weight and the top 2 kept (ties: the
    lower input first); on each kept edge the non-`none` op of largest weight (ties: the earlier
    column). Pairs are appended strongest edge first, as DARTS does.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (len(EDGES), len(ops)):
        raise GenotypeError(f"cell weights of shape {w.shape}, expected {(len(EDGES), len(ops))}")
    cols = [k for k, o in enumerate(ops) if o != "none"]
    sub = w[:, cols]
    gene: list[tuple[str, int]] = []
    start = 0
    for i in range(STEPS):
        rows = sub[start : start + 2 + i]
        strength = rows.max(axis=1)
        top = sorted(range(len(rows)), key=lambda j: -strength[j])[:2]  # stable: lower j first
        gene.extend((ops[cols[int(rows[j].argmax())]], j) for j in top)
        start += 2 + i
    return tuple(gene)


def derive_genotype(
    weights: np.ndarray, ops: Sequence[str], edge_weights: np.ndarray | None = None
) -> Genotype:
    """The genotype of a search network's op distribution [28, K] (normal rows, then reduce).

    edge_weights [28] (PC-DARTS's edge normalisation: the node-wise softmax of the betas, or
    GAEA+PC-DARTS's edge weights): the rule runs on W = weights * edge_weights[:, None], as
    PC-DARTS's genotype() does, so the edge weights decide which 2 edges a node keeps (the op
    on a kept edge is the same argmax)."""
    w = np.asarray(weights)
    n = len(EDGES)
    if w.shape != (2 * n, len(ops)):
        raise GenotypeError(f"weights of shape {w.shape}, expected {(2 * n, len(ops))}")
    if edge_weights is not None:
        e = np.asarray(edge_weights, dtype=np.float64)
        if e.shape != (2 * n,):
            raise GenotypeError(f"edge weights of shape {e.shape}, expected {(2 * n,)}")
        w = np.asarray(w, dtype=np.float64) * e[:, None]
    return Genotype(derive_cell(w[:n], ops), derive_cell(w[n:], ops))


# ------------------------------------------------------------------------------------------
# the text


def _literal(node: ast.expr, what: str):
    """A list/tuple literal, or DARTS's `range(a, b)`, as a Python value (no eval)."""
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "range":
        return list(range(*(ast.literal_eval(a) for a in node.args)))
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise GenotypeError(f"genotype {what}: not a literal: {ast.unparse(node)!r}") from None


def _check_cell(pairs, what: str) -> Cell:
    if not isinstance(pairs, list | tuple) or len(pairs) != 2 * STEPS:
        raise GenotypeError(f"genotype {what}: expected {2 * STEPS} (op, input) pairs")
    cell = []
    for k, p in enumerate(pairs):
        node = 2 + k // 2
        if not (isinstance(p, tuple | list) and len(p) == 2 and isinstance(p[1], int)):
            raise GenotypeError(f"genotype {what}[{k}]: expected (op, input), got {p!r}")
        op, j = p
        if op not in OPS or op == "none":
            raise GenotypeError(
                f"genotype {what}[{k}]: unknown op {op!r}; valid: {', '.join(OPS[1:])}"
            )
        if not 0 <= j < node:
            raise GenotypeError(
                f"genotype {what}[{k}]: node {node} cannot take input {j} (0..{node - 1})"
            )
        cell.append((op, j))
    return tuple(cell)


def parse_genotype(text: str) -> Genotype:
    """Read DARTS's `Genotype(normal=[...], normal_concat=..., reduce=[...], reduce_concat=...)`
    (concat as a list or `range(2, 6)`); a GenotypeError says what is wrong, in one line."""
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        raise GenotypeError(f"not a Genotype(...) text: {text[:80]!r}") from None
    if not (isinstance(tree, ast.Call) and getattr(tree.func, "id", None) == "Genotype"):
        raise GenotypeError(f"not a Genotype(...) text: {text[:80]!r}")
    fields = {kw.arg: _literal(kw.value, kw.arg or "?") for kw in tree.keywords}
    missing = {"normal", "reduce"} - fields.keys()
    if missing or tree.args:
        raise GenotypeError(f"genotype text needs keywords normal= and reduce=: {text[:80]!r}")
    concat = {k: tuple(fields.get(k, CONCAT)) for k in ("normal_concat", "reduce_concat")}
    for k, v in concat.items():
        if v != CONCAT:
            raise GenotypeError(f"genotype {k}: only {list(CONCAT)} is supported, got {list(v)}")
    return Genotype(
        _check_cell(fields["normal"], "normal"), _check_cell(fields["reduce"], "reduce")
    )


# ------------------------------------------------------------------------------------------
# published genotypes (data, as their papers' repositories give them)

#: name -> genotype text: DARTS (quark0/darts cnn/genotypes.py) and the paper's Table 4
#: (chaoji90/Selective-Stop DrNAS/DARTS-space/genotypes.py, its hyphenated names kept as text)
PUBLISHED: dict[str, str] = {
    "DARTS_V1": "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])",
    "DARTS_V2": "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])",
    "SS-DARTS-DilConv5": "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 2), ('dil_conv_5x5', 3), ('skip_connect', 0), ('dil_conv_3x3', 4), ('dil_conv_5x5', 3)], normal_concat=range(2, 6), reduce=[('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('max_pool_3x3', 0), ('skip_connect', 3), ('skip_connect', 2), ('skip_connect', 3), ('skip_connect', 2)], reduce_concat=range(2, 6))",
    "SS-DARTS-SepConv5": "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_5x5', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 3), ('dil_conv_3x3', 2), ('dil_conv_3x3', 4), ('dil_conv_5x5', 3)], normal_concat=range(2, 6), reduce=[('max_pool_3x3', 0), ('dil_conv_3x3', 1), ('max_pool_3x3', 0), ('dil_conv_5x5', 2), ('max_pool_3x3', 0), ('dil_conv_5x5', 3), ('dil_conv_5x5', 4), ('max_pool_3x3', 0)], reduce_concat=range(2, 6))",
    "SS-DARTS-DilConv3": "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('skip_connect', 2), ('skip_connect', 0), ('dil_conv_5x5', 3), ('sep_conv_3x3', 0), ('dil_conv_3x3', 4), ('dil_conv_5x5', 3)], normal_concat=range(2, 6), reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('max_pool_3x3', 0), ('skip_connect', 3), ('max_pool_3x3', 0), ('skip_connect', 3)], reduce_concat=range(2, 6))",
    "SS-DARTS-SepConv3": "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 2), ('dil_conv_5x5', 3), ('dil_conv_3x3', 2), ('dil_conv_3x3', 4), ('dil_conv_5x5', 3)], normal_concat=range(2, 6), reduce=[('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('max_pool_3x3', 0), ('skip_connect', 3), ('skip_connect', 2), ('skip_connect', 3), ('skip_connect', 2)], reduce_concat=range(2, 6))",
}
