"""Worked examples that ship with the package (e.g. a stop criterion of your own: `stops`)."""
