"""Torch utilities below the spaces and the search: data sets and batches (data.py), device,
seeding, RNG state and evaluation on a split (runtime.py)."""
