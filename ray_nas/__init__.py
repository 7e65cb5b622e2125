"""ray_nas: Ray sweeps of differentiable architecture search (DARTS-V1/V2, GAEA, DrNAS, SDARTS,
SNAS, GDAS, NASP, PC-DARTS on NAS-Bench-201, the DARTS space and NAS-Bench-1Shot1), with the
offline stop criteria of Zhang & Ding, CIKM '21.

Importing the package is cheap: torch, ray and mlflow are imported by the modules that need them.
`nb101_hash` (the NAS-Bench-101 graph hash) comes from the light `ray_nas.spaces.nb101` (hashlib
only; importing it loads the light space registry, numpy at most).
"""

from ray_nas.spaces.nb101 import nb101_hash

__all__ = ["nb101_hash"]

__version__ = "0.1.0"
