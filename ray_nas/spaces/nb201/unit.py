"""The NAS-Bench-201 Space unit: what the pipeline asks the space (see `spaces.base.Space`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

import ray_nas.spaces.nb201.train as nb201_train
from ray_nas.spaces.base import Space
from ray_nas.spaces.nb201.names import (
    EDGES,
    LEARNABLE_OPS,
    OPS,
    arch_string,
    parse_arch,
    validate_ops,
)


class NB201Space(Space):
    """NAS-Bench-201: one cell type (`shared`: one parameter for all cells), 6 edges, 5 ops."""

    name = "nb201"
    ops = OPS
    cell_types = ("shared",)
    edges = EDGES
    magnitude_cell = "shared"
    criteria_ops = ("nor_conv_3x3",)  # the paper's Eq.12/13 op
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
        from ray_nas.spaces.nb201.build import build_supernet  # torch: imported on use

        return build_supernet(cfg.impl, cfg.ops, cfg.channels, cfg.cells, num_classes,
                              cfg.track_running_stats, cfg.channels_last,
                              getattr(cfg, "partial_channels", 1),
                              getattr(cfg, "edge_normalization", False))  # fmt: skip

    def connection_rows(self, cfg=None) -> tuple[tuple[str, str, str], ...]:
        """With `search.edge_normalization` (PC-DARTS): one row per edge, (cell, edge, op) =
        ("beta_shared", edge, "beta"); alpha = the raw beta, weight = the node-wise softmax the
        edge is multiplied with. () otherwise. The genotype (argmax per edge) does not read them."""
        if cfg is None or not getattr(cfg, "edge_normalization", False):
            return ()
        return tuple(("beta_shared", e, "beta") for e in EDGES)

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
