"""The NAS-Bench-201 cell space unit: op names, edge names, arch-string encodings, and its Space.

One ordering of ops and one of edges for the whole project; everything else refers to ops BY NAME.
Pure Python and numpy (no torch) so it can be imported anywhere cheaply; the supernets are
ray_nas.spaces.nb201_supernet (reference) and ray_nas.spaces.nb201_fast_supernet, built on demand.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ray_nas.spaces import nb201_train
from ray_nas.spaces.base import Space

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


def arch_index(arch: str) -> int:
    """The arch's index in the 5^6 enumeration in OPS order, edge 1<-0 the fastest digit.

    NOTE: this is NOT the benchmark's official index (that order is only known from the
    benchmark file); use the benchmark table's `index` column for that.
    """
    idx = 0
    for k, op in enumerate(parse_arch(arch)):
        idx += OPS.index(op) * len(OPS) ** k
    return idx


# ------------------------------------------------------------------------------------------
# the space unit


class NB201Space(Space):
    """NAS-Bench-201: one cell type (`shared`: one parameter for all cells), 6 edges, 5 ops."""

    name = "nb201"
    ops = OPS
    cell_types = ("shared",)
    edges = EDGES
    magnitude_cell = "shared"
    learnable_ops = LEARNABLE_OPS
    benchmark_key_column = "arch"
    size_key = "cells"

    def validate_ops(self, ops: Sequence[str]) -> tuple[str, ...]:
        return validate_ops(ops)

    def genotype_text(self, weights, ops: Sequence[str]) -> str:
        """Per edge the op of largest weight (the first on ties): the NB201 arch string."""
        return arch_string([ops[int(k)] for k in np.asarray(weights).argmax(axis=1)])

    def check_genotype(self, text: str) -> str:
        parse_arch(text)
        return text

    def benchmark_key(self, text: str) -> str:
        """The arch string itself (the NAS-Bench-201 table's `arch` column)."""
        return text

    def brief(self, text: str) -> str:
        return ",".join(parse_arch(text))

    def arch_of(self, model, weights) -> str:
        """The supernet's own genotype: argmax of the raw alpha per edge (as recorded so far)."""
        return model.arch()

    def skip_count(self, text: str, cell: str) -> int:
        return parse_arch(text).count("skip_connect")

    def build_supernet(self, cfg, num_classes: int):
        from ray_nas.spaces.nb201_supernet import build_supernet

        return build_supernet(cfg.impl, cfg.ops, cfg.channels, cfg.cells, num_classes,
                              cfg.track_running_stats, cfg.channels_last)  # fmt: skip

    impls = ("fast", "reference")

    # evaluation: the discrete network, one recipe set by evaluate.retrain's own keys
    recipes = nb201_train.RECIPES
    default_recipe = "nb201"
    retrain_cache = "retrain.parquet"
    retrain_columns = {"genotype_key": "arch", "dataset": "dataset", "recipe_key": "settings",
                       "test_acc": "test_acc", "seconds": "seconds"}  # fmt: skip
    """the cache's layout since before spaces were units: (arch, dataset, settings) -> acc"""

    def retrain_recipe(self, cfg):
        """evaluate.retrain's epochs, channels, cells, batch_size, lr, steps_per_epoch (its
        `recipe` and `overrides` name the recipes of spaces that have several)."""
        return self.default_recipe, nb201_train.recipe_of(cfg)

    def retrain_seeds(self, cfg) -> tuple[int, ...]:
        """Seed 0 only, as before seeds existed (the cache has no seed column)."""
        return (0,)

    def build_eval_network(self, genotype_text: str, rec, num_classes: int):
        return nb201_train.build_network(genotype_text, rec, num_classes)

    def retrain(self, genotype_text, rec, dataset, data_root, seed, checkpoint=None,
                device="cpu", log=print, on_epoch=None):  # fmt: skip
        """nb201_train.retrain; not checkpointed (`checkpoint` is ignored: minutes per run)."""
        return nb201_train.retrain(genotype_text, rec, dataset, data_root, seed, device, on_epoch)


SPACE = NB201Space()
