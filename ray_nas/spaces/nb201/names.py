"""The NAS-Bench-201 cell space, pure part: op names, edge names and the arch-string encoding.

One ordering of ops and one of edges for the whole project; everything else refers to ops BY NAME.
Pure Python and numpy (no torch) so it can be imported anywhere cheaply; the supernets are
ray_nas.spaces.nb201.supernet (reference) and ray_nas.spaces.nb201.fast, built on demand.
"""

from __future__ import annotations

from collections.abc import Sequence

#: The five candidate operations, in the benchmark's order.
OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")

#: Ops with weights (the "learnable" ops of DARTS+).
LEARNABLE_OPS: frozenset[str] = frozenset({"nor_conv_1x1", "nor_conv_3x3"})

#: Number of nodes in a cell (node 0 is the input, node 3 the output).
NODES = 4

#: The six edges (target, source), in this order: 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2.
EDGE_PAIRS: tuple[tuple[int, int], ...] = tuple((i, j) for i in range(1, NODES) for j in range(i))

#: Edge names as stored in Parquet (`"1<-0"`, ...), order EDGE_PAIRS.
EDGES: tuple[str, ...] = tuple(f"{i}<-{j}" for i, j in EDGE_PAIRS)


def validate_ops(ops: Sequence[str]) -> tuple[str, ...]:
    """Return `ops` re-ordered into the canonical OPS order; raise ValueError on unknown/empty/duplicate."""
    ops = list(ops)
    unknown = [o for o in ops if o not in OPS]
    if unknown:
        raise ValueError(f"unknown op {unknown[0]!r}; valid ops: {', '.join(OPS)}")
    if len(set(ops)) != len(ops):
        raise ValueError(f"duplicate op in {ops}")
    if not ops:
        raise ValueError(f"op set is empty; choose from: {', '.join(OPS)}")
    return tuple(o for o in OPS if o in ops)


def arch_string(genotype: Sequence[str]) -> str:
    """Arch string of a genotype: one op name per edge, order EDGES.

    >>> arch_string(["nor_conv_3x3"] * 6)
    '|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|'
    """
    if len(genotype) != len(EDGES):
        raise ValueError(f"a genotype has {len(EDGES)} edges, got {len(genotype)}")
    groups, k = [], 0
    for i in range(1, NODES):
        parts = []
        for j in range(i):
            parts.append(f"{genotype[k]}~{j}")
            k += 1
        groups.append("|" + "|".join(parts) + "|")
    return "+".join(groups)


def parse_arch(arch: str) -> tuple[str, ...]:
    """Inverse of arch_string: the op name on each edge, order EDGES."""
    groups = arch.split("+")
    if len(groups) != NODES - 1:
        raise ValueError(f"not a NAS-Bench-201 arch string: {arch!r}")
    ops: list[str] = []
    for i, group in enumerate(groups, start=1):
        items = [s for s in group.strip("|").split("|") if s]
        if len(items) != i:
            raise ValueError(f"not a NAS-Bench-201 arch string: {arch!r}")
        for j, item in enumerate(items):
            op, _, src = item.partition("~")
            if op not in OPS or src != str(j):
                raise ValueError(f"not a NAS-Bench-201 arch string: {arch!r} (bad item {item!r})")
            ops.append(op)
    return tuple(ops)
