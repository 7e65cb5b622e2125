"""NAS-Bench-201 (Dong & Yang 2020): one cell type, 6 edges, 5 ops.

names.py   op and edge names, the arch-string encoding (pure)
unit.py    the Space unit (`SPACE`) the pipeline asks
supernet.py, fast.py, build.py   the search supernets (torch; reference and fast)
train.py   the discrete network's retraining recipe (torch imported on use)
"""

from ray_nas.spaces.nb201.names import (  # noqa: F401
    EDGE_PAIRS,
    EDGES,
    LEARNABLE_OPS,
    NODES,
    OPS,
    arch_string,
    parse_arch,
    validate_ops,
)
from ray_nas.spaces.nb201.unit import SPACE, NB201Space  # noqa: F401
