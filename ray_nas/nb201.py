"""Old home of the NAS-Bench-201 names, kept so `from ray_nas import nb201` (scripts, notebooks,
the benchmark converter) still works: they live in the space unit ray_nas.spaces.nb201."""

from ray_nas.spaces.nb201 import *  # noqa: F403
from ray_nas.spaces.nb201 import EDGE_PAIRS, EDGES, LEARNABLE_OPS, NODES, OPS  # noqa: F401
