"""Search spaces, one unit each: `darts` (the DARTS CIFAR-10 cell space) so far; NAS-Bench-201's
names still live in ray_nas.nb201 until the space interface and registry land (issue 13, phase 2).
"""
