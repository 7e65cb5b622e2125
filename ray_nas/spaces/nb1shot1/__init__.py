"""NAS-Bench-1Shot1 (Zela et al. 2020): search spaces 1-3 over NAS-Bench-101 cells.

ops.py       the supernet's op columns (pure)
unit.py      the Space units (`SPACE_S1..3`), the cell and genotype text, discretisation (pure)
supernet.py  the one-shot supernet (torch)
"""

from ray_nas.spaces.nb1shot1.ops import DUMMY_VERTEX, SHORT_OPS, SPACE_OPS  # noqa: F401
from ray_nas.spaces.nb1shot1.unit import (  # noqa: F401
    SPACE_S1,
    SPACE_S2,
    SPACE_S3,
    SPACES,
    Cell,
    NB1Shot1Space,
    build_cell,
    cell_text,
    discretise,
    enumerate_specs,
    get_space,
    graphs,
    num_configurations,
    parse_cell_text,
    reachable_hashes,
    top_k,
)
