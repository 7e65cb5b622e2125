"""The DARTS-space Space unit: what the pipeline asks the space (see `spaces.base.Space`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

import ray_nas.spaces.darts.train as darts_train
from ray_nas.spaces.base import Space
from ray_nas.spaces.darts.genotype import (
    CELL_TYPES,
    EDGES,
    OPS,
    GenotypeError,
    check_ops,
    derive_genotype,
    parse_genotype,
)

# ------------------------------------------------------------------------------------------
# the space unit


class DartsSpace(Space):
    """The DARTS space: normal and reduction cells, 14 edges each, 8 ops (or a subset)."""

    name = "darts"
    ops = OPS
    cell_types = CELL_TYPES
    edges = EDGES
    magnitude_cell = "normal"
    #: Table 4's: the Eq.12 peak of each selects one genotype (SS-DARTS-SepConv5, ...)
    criteria_ops = ("sep_conv_5x5", "sep_conv_3x3", "dil_conv_3x3", "dil_conv_5x5")
    learnable_ops = frozenset(o for o in OPS if "conv" in o)
    min_layers = 3  # two reduction cells, at 1/3 and 2/3
    report_sections = ("table4",)
    export_format = "darts"

    def validate_ops(self, ops: Sequence[str]) -> tuple[str, ...]:
        try:
            return check_ops(ops)
        except GenotypeError as e:
            raise ValueError(str(e)) from None

    def genotype_text(
        self, weights: np.ndarray, ops: Sequence[str], edge_weights: np.ndarray | None = None
    ) -> str:
        """DARTS's rule; with edge weights [28] (edge normalisation) on weights * edge weight."""
        return derive_genotype(weights, ops, edge_weights).text()

    def connection_rows(self, cfg=None) -> tuple[tuple[str, str, str], ...]:
        """With `search.edge_normalization` (PC-DARTS): one row per edge of each cell type,
        (cell, edge, op) = ("beta_normal" | "beta_reduce", edge, "beta"); alpha = the raw beta,
        weight = the weight the edge is multiplied with. () otherwise (and without a config)."""
        if cfg is None or not getattr(cfg, "edge_normalization", False):
            return ()
        return tuple((f"beta_{c}", e, "beta") for c in CELL_TYPES for e in EDGES)

    def arch_of(self, model, weights) -> str:
        """DARTS's rule on the recorded op distribution [28, K], times the supernet's edge
        weights where it has them (PC-DARTS's genotype)."""
        w = weights.detach().float().cpu().numpy()
        conn = model.connection_weights().detach().float().cpu().numpy()
        return self.genotype_text(w, model.op_names, conn if conn.size else None)

    def check_genotype(self, text: str) -> str:
        parse_genotype(text)
        return text

    def genotype_key(self, text: str) -> str:
        return parse_genotype(text).key()

    def brief(self, text: str) -> str:
        return parse_genotype(text).key()

    def skip_count(self, text: str, cell: str) -> int:
        return sum(op == "skip_connect" for op, _ in parse_genotype(text).cell(cell))

    def export_text(self, job: str, entries: Sequence[tuple[str, str, str]]) -> str:
        from ray_nas.spaces.darts.export import genotypes_file

        return genotypes_file(job, entries)

    def build_supernet(self, cfg, num_classes: int):
        import torch

        from ray_nas.spaces.darts.network import SearchNetwork  # torch: imported on use

        net = SearchNetwork(cfg.ops, cfg.channels, cfg.layers, num_classes,
                            getattr(cfg, "partial_channels", 1),
                            getattr(cfg, "edge_normalization", False))  # fmt: skip
        return net.to(memory_format=torch.channels_last) if cfg.channels_last else net

    impls = ("fast",)
    """one implementation of the search network (search.impl: reference is refused)"""

    # evaluation: NetworkCIFAR under a named recipe, per seed, checkpointed every epoch
    recipes = darts_train.RECIPES
    default_recipe = "darts"
    retrain_cache = "retrain_genotypes.parquet"

    def check_retrain(self, rec, dataset: str, image_size: int) -> None:
        """DARTS's auxiliary head reads the 8x8 map after the second reduction: 32x32 images."""
        if rec.auxiliary_weight > 0 and image_size != 32:
            raise ValueError(
                f"overrides.auxiliary_weight: {rec.auxiliary_weight:g} needs 32x32 images (DARTS's "
                f"auxiliary head), but {dataset} has {image_size}x{image_size}; set "
                "evaluate.retrain.overrides.auxiliary_weight: 0 or retrain on a 32x32 data set"
            )

    def build_eval_network(self, genotype_text: str, rec, num_classes: int):
        return darts_train.build_network(genotype_text, rec, num_classes)

    def retrain(self, genotype_text, rec, dataset, data_root, seed, checkpoint=None,
                device="cpu", log=print, on_epoch=None):  # fmt: skip
        return darts_train.retrain(genotype_text, rec, dataset, data_root, seed, checkpoint,
                                   device, log, on_epoch)  # fmt: skip


SPACE = DartsSpace()
