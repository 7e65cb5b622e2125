"""ray_nas: distributed DARTS sweeps on NAS-Bench-201 (Zhang & Ding, CIKM '21).

Importing the package is cheap: torch, ray and mlflow are imported by the modules that need them.
"""

__version__ = "0.1.0"
