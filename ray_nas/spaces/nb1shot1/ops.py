"""The NAS-Bench-1Shot1 supernet's op columns and short op names (shared by the unit and the supernet)."""

from ray_nas.spaces.nb101 import CONV1X1, CONV3X3, MAXPOOL3X3

#: Op columns of the ``mixed_op`` weights (the upstream supernet's PRIMITIVES order). Note that
#: NAS-Bench-101's own order (`nb101.OPS`) differs.
SPACE_OPS: tuple[str, ...] = (MAXPOOL3X3, CONV3X3, CONV1X1)

#: Index of the dummy vertex inserted into the 6-vertex cells of spaces 1 and 2.
DUMMY_VERTEX = 5

#: short op names of `NB1Shot1Space.brief`
SHORT_OPS: dict[str, str] = {MAXPOOL3X3: "mp", CONV3X3: "c3", CONV1X1: "c1"}
