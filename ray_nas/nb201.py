"""Old home of the NAS-Bench-201 names, kept so scripts, notebooks, tests and the benchmark
converter that import `ray_nas.nb201` still work: the names live in the space unit
ray_nas.spaces.nb201."""

from ray_nas.spaces.nb201 import *  # noqa: F403
from ray_nas.spaces.nb201 import EDGE_PAIRS, EDGES, LEARNABLE_OPS, NODES, OPS  # noqa: F401
