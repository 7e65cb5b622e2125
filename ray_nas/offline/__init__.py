"""The offline stage: a job's store read once (results.py: JobResults), the criteria applied and
scored (select.py), summarised (summary.py), retrained where no table scores them (retrain.py),
written (evaluate.py) and compared across jobs (compare.py). No torch, Ray or MLflow at import.
"""
