"""The worker side: the search loop (loop.py), one trial on the store (trial.py), the store's
integrity rules (integrity.py), the Ray Tune sweep (sweep.py, the only ray import), its
Prometheus exporter (metrics.py) and test-only fault hooks (faults.py).

`from ray_nas.search import search` gives the loop; torch is imported only then.
"""


def __getattr__(name: str):
    if name == "search":
        from ray_nas.search.loop import search  # torch: imported on use

        return search
    raise AttributeError(f"module 'ray_nas.search' has no attribute {name!r}")
