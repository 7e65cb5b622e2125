"""The DARTS CIFAR-10 cell space (Liu et al. 2019): normal and reduction cells, 14 edges, 8 ops.

genotype.py  ops, edges, the genotype rule and DARTS's `Genotype(...)` text, published genotypes (pure)
unit.py      the Space unit (`SPACE`) the pipeline asks
network.py   the search network and the evaluation network NetworkCIFAR (torch)
train.py     the retraining recipes and loop (torch imported on use)
"""

from ray_nas.spaces.darts.genotype import *  # noqa: F403
from ray_nas.spaces.darts.genotype import (  # noqa: F401
    CELL_TYPES,
    CONCAT,
    EDGE_PAIRS,
    EDGES,
    OPS,
    PAPER_OPS,
    PUBLISHED,
    STEPS,
    Genotype,
    GenotypeError,
    derive_cell,
    derive_genotype,
    parse_genotype,
)
from ray_nas.spaces.darts.unit import SPACE, DartsSpace  # noqa: F401
