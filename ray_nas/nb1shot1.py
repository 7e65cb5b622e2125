"""The three NAS-Bench-1Shot1 search spaces as pure data: choice blocks, architecture-weight
shapes, discretisation into a NAS-Bench-101 cell, and enumeration of every reachable cell.

Source: automl/nasbench-1shot1 (``nasbench_analysis/search_spaces/search_space_{1,2,3}.py``,
``optimizers/darts/model_search.py``, ``nasbench_analysis/eval_darts_one_shot_model_in_nasbench.py``);
see ``../shared/guide/SPACES.md`` part B. Each space is a NAS-Bench-101 cell whose vertices are
0 = input, 1..steps = choice blocks, steps+1 = output, with a fixed number of parents per vertex
(9 edges in all). One set of architecture weights is shared by all cells of the supernet:

=================  ===============  ==========================================================
group              shape            meaning
=================  ===============  ==========================================================
``mixed_op``       [steps, 3]       op of each choice block, columns in `SPACE_OPS` order
``output``         [1, steps + 1]   which of {input, block 1..steps} feed the output (index = vertex)
``inputs_<v>``     [1, v]           parents of vertex v (index = parent vertex), for each vertex
                                    of `Space.choice_vertices`; the other vertices' parents are fixed
=================  ===============  ==========================================================

Spaces 1 and 2 have 4 choice blocks; their 6-vertex cell gets an unused dummy vertex (op
``conv1x1-bn-relu``, no edges) at index 5 so that the NAS-Bench-101 matrix is 7x7, exactly as the
upstream code does; pruning removes it again. No torch, no NumPy: weights are nested sequences of
floats (a tensor's ``tolist()``).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from ray_nas import nb101
from ray_nas.nb101 import CONV1X1, CONV3X3, INPUT, MAXPOOL3X3, OUTPUT, Matrix

#: Op columns of the ``mixed_op`` weights (the upstream supernet's PRIMITIVES order). Note that
#: NAS-Bench-101's own order (`nb101.OPS`) differs.
SPACE_OPS: tuple[str, ...] = (MAXPOOL3X3, CONV3X3, CONV1X1)

#: Index of the dummy vertex inserted into the 6-vertex cells of spaces 1 and 2.
DUMMY_VERTEX = 5


@dataclass(frozen=True)
class Space:
    """One NAS-Bench-1Shot1 search space.

    `num_parents[v-1]` is the number of parents of vertex v (v = 1..steps for the choice blocks,
    steps+1 for the output); `min_test_error` / `min_valid_error` are the best NAS-Bench-101
    errors (fractions, mean of 3 runs at 108 epochs) in the space as the upstream code gives them.
    """

    name: str
    number: int
    num_parents: tuple[int, ...]
    min_test_error: float
    min_valid_error: float

    @property
    def steps(self) -> int:
        """Number of choice blocks (intermediate vertices)."""
        return len(self.num_parents) - 1

    @property
    def output_vertex(self) -> int:
        return self.steps + 1

    @property
    def num_edges(self) -> int:
        """Edges of every cell of the space (with all parents of every vertex): 9."""
        return sum(self.num_parents)

    @property
    def has_dummy(self) -> bool:
        """True for the 4-block spaces, whose cell gets the dummy vertex to reach 7 vertices."""
        return self.steps + 2 < nb101.MAX_VERTICES

    def parent_options(self, vertex: int) -> list[tuple[int, ...]]:
        """Every allowed parent set of `vertex` (sorted tuples of earlier vertices)."""
        return list(itertools.combinations(range(vertex), self.num_parents[vertex - 1]))

    @property
    def choice_vertices(self) -> tuple[int, ...]:
        """Choice blocks whose parents are chosen by ``inputs_<v>`` weights (more than one option)."""
        return tuple(v for v in range(1, self.steps + 1) if len(self.parent_options(v)) > 1)

    def fixed_parents(self, vertex: int) -> tuple[int, ...]:
        """Parents of a choice block that has no input weights (its only option)."""
        (only,) = self.parent_options(vertex)
        return only

    def alpha_shapes(self) -> dict[str, tuple[int, int]]:
        """Shapes of the architecture-weight groups, in the upstream ``arch_parameters`` order."""
        shapes = {"mixed_op": (self.steps, len(SPACE_OPS)), "output": (1, self.steps + 1)}
        shapes.update({f"inputs_{v}": (1, v) for v in self.choice_vertices})
        return shapes


SPACES: dict[str, Space] = {
    s.name: s
    for s in (
        Space("nb1shot1_s1", 1, (1, 2, 2, 2, 2), 0.05448716878890991, 0.049278855323791504),
        Space("nb1shot1_s2", 2, (1, 1, 2, 2, 3), 0.057592153549194336, 0.051582515239715576),
        Space("nb1shot1_s3", 3, (1, 1, 1, 2, 2, 2), 0.05338543653488159, 0.04847759008407593),
    )
}


def get_space(name: str) -> Space:
    """The space called `name`; ValueError (one line, listing the valid names) otherwise."""
    try:
        return SPACES[name]
    except KeyError:
        raise ValueError(
            f"unknown NAS-Bench-1Shot1 space {name!r}; valid: {list(SPACES)}"
        ) from None


# --------------------------------------------------------------------------------------------
# Cells
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """A discretised cell.

    `parents` maps every vertex 1..steps+1 to its chosen parents; `block_ops` is the op of each
    choice block; `matrix` / `ops` are the 7x7 NAS-Bench-101 spec as the upstream code builds it
    (only vertices that feed the output keep their in-edges; dummy vertex for spaces 1 and 2);
    `pruned_matrix` / `pruned_ops` the spec after NAS-Bench-101 pruning and `hash` its key.
    """

    parents: dict[int, tuple[int, ...]]
    block_ops: tuple[str, ...]
    matrix: Matrix
    ops: list[str]
    pruned_matrix: Matrix
    pruned_ops: list[str]
    hash: str


def _feeding_edges(space: Space, parents: Mapping[int, Sequence[int]]) -> set[tuple[int, int]]:
    """Edges p -> v of every vertex v that feeds the output (walking back from the output)."""
    edges: set[tuple[int, int]] = set()
    seen: set[int] = set()
    stack = [space.output_vertex]
    while stack:
        v = stack.pop()
        for p in parents[v]:
            edges.add((p, v))
            if p and p not in seen:
                seen.add(p)
                stack.append(p)
    return edges


def _spec(space: Space, edges: set[tuple[int, int]], block_ops: Sequence[str]):
    """The 7x7 NAS-Bench-101 (matrix, ops) of a space's cell with these edges and block ops."""
    n = space.steps + 2
    insert = space.has_dummy

    def index(v: int) -> int:
        return v + 1 if insert and v >= DUMMY_VERTEX else v

    size = n + 1 if insert else n
    matrix = [[0] * size for _ in range(size)]
    for p, v in edges:
        matrix[index(p)][index(v)] = 1
    ops = [INPUT, *block_ops, OUTPUT]
    if insert:
        ops.insert(DUMMY_VERTEX, CONV1X1)
    return matrix, ops


def build_cell(
    space: Space, parents: Mapping[int, Sequence[int]], block_ops: Sequence[str]
) -> Cell:
    """The cell with the given parents of every vertex 1..steps+1 and op of every choice block.

    Raises ValueError when a parent set is not one the space allows or an op is unknown.
    """
    parents = {int(v): tuple(sorted(int(p) for p in ps)) for v, ps in parents.items()}
    for v in range(1, space.output_vertex + 1):
        if parents.get(v) not in space.parent_options(v):
            raise ValueError(
                f"{space.name}: parents of vertex {v} = {parents.get(v)} not allowed; "
                f"valid: {space.parent_options(v)}"
            )
    if len(block_ops) != space.steps or set(block_ops) - set(SPACE_OPS):
        raise ValueError(
            f"{space.name}: block ops {list(block_ops)} must be {space.steps} of {list(SPACE_OPS)}"
        )
    matrix, ops = _spec(space, _feeding_edges(space, parents), block_ops)
    pruned = nb101.prune(matrix, ops)
    assert pruned is not None  # every vertex has a parent, so the output always reaches the input
    return Cell(
        parents=parents,
        block_ops=tuple(block_ops),
        matrix=matrix,
        ops=ops,
        pruned_matrix=pruned[0],
        pruned_ops=pruned[1],
        hash=nb101.hash_module(pruned[0], nb101.labels(pruned[1])),
    )


# --------------------------------------------------------------------------------------------
# Discretisation of architecture weights
# --------------------------------------------------------------------------------------------


def _vector(name: str, values, length: int) -> list[float]:
    """`values` (length floats, or one row of them) as a list of finite floats."""
    if hasattr(values, "tolist"):
        values = values.tolist()
    rows = list(values)
    if len(rows) == 1 and isinstance(rows[0], (list, tuple)):
        rows = list(rows[0])
    if len(rows) != length or any(isinstance(v, (list, tuple)) for v in rows):
        raise ValueError(f"{name} must hold {length} weights (shape [1, {length}]), got {values!r}")
    out = [float(v) for v in rows]
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"{name} has a non-finite weight: {out}")
    return out


def top_k(weights: Sequence[float], k: int) -> tuple[int, ...]:
    """Indices of the `k` largest weights, sorted; ties go to the lower index.

    Softmax is monotone, so this is the top-k of softmax(weights) that the upstream code takes
    (it uses ``np.argpartition``, whose tie order is unspecified).
    """
    order = sorted(range(len(weights)), key=lambda i: (-weights[i], i))
    return tuple(sorted(order[:k]))


def discretise(
    space: Space,
    mixed_op: Sequence[Sequence[float]],
    output: Sequence[float],
    inputs: Sequence[Sequence[float]] | Mapping[int, Sequence[float]],
) -> Cell:
    """The cell chosen by architecture weights (raw or softmaxed; see `Space.alpha_shapes`).

    `mixed_op`: steps rows of 3 weights (`SPACE_OPS` columns) -> op of each block = argmax;
    `output`: steps+1 weights -> output parents = top-k, k = the output's parent count;
    `inputs`: one weight vector per vertex of `space.choice_vertices` (a list in that order, or a
    dict vertex -> weights) -> its parents = top-k of its weights. Vertices without input weights
    take their only parent set. Raises ValueError (one line) for wrong shapes or non-finite values.
    """
    if hasattr(mixed_op, "tolist"):
        mixed_op = mixed_op.tolist()
    if len(mixed_op) != space.steps:
        raise ValueError(
            f"{space.name}: mixed_op must have {space.steps} rows, got {len(mixed_op)}"
        )
    rows = [_vector(f"mixed_op[{b}]", r, len(SPACE_OPS)) for b, r in enumerate(mixed_op)]
    block_ops = [SPACE_OPS[top_k(r, 1)[0]] for r in rows]

    choice = space.choice_vertices
    if not isinstance(inputs, Mapping):
        if hasattr(inputs, "tolist"):
            inputs = inputs.tolist()
        if len(inputs) != len(choice):
            raise ValueError(
                f"{space.name}: inputs must hold {len(choice)} weight vectors "
                f"(vertices {list(choice)}), got {len(inputs)}"
            )
        inputs = dict(zip(choice, inputs))
    if sorted(inputs) != list(choice):
        raise ValueError(
            f"{space.name}: inputs are for vertices {sorted(inputs)}, not {list(choice)}"
        )

    parents: dict[int, tuple[int, ...]] = {}
    for v in range(1, space.steps + 1):
        if v in inputs:
            weights = _vector(f"inputs_{v}", inputs[v], v)
            parents[v] = top_k(weights, space.num_parents[v - 1])
        else:
            parents[v] = space.fixed_parents(v)
    out_w = _vector("output", output, space.steps + 1)
    parents[space.output_vertex] = top_k(out_w, space.num_parents[-1])
    return build_cell(space, parents, block_ops)


# --------------------------------------------------------------------------------------------
# Enumeration
# --------------------------------------------------------------------------------------------


def num_configurations(space: Space) -> int:
    """Number of (parent sets, block ops) choices of the space, loose ends included."""
    graphs = math.prod(len(space.parent_options(v)) for v in range(1, space.output_vertex + 1))
    return graphs * len(SPACE_OPS) ** space.steps


def graphs(space: Space) -> list[frozenset[tuple[int, int]]]:
    """Every distinct edge set a choice of parents can give once loose ends are dropped (the
    edges of the vertices that feed the output), in a fixed order."""
    options = [space.parent_options(v) for v in range(1, space.output_vertex + 1)]
    seen: dict[frozenset[tuple[int, int]], None] = {}
    for combo in itertools.product(*options):
        parents = dict(zip(range(1, space.output_vertex + 1), combo))
        seen.setdefault(frozenset(_feeding_edges(space, parents)), None)
    return list(seen)


def enumerate_specs(space: Space) -> Iterator[tuple[Matrix, list[str]]]:
    """Every NAS-Bench-101 spec (7x7 matrix, ops) the space can express: each loose-end-free
    graph (`graphs`) with every op assignment of the blocks it uses (unused blocks keep
    ``conv1x1-bn-relu``, as upstream; pruning drops them). Isomorphic specs are not merged."""
    for edges in graphs(space):
        used = sorted({p for p, _ in edges if p})
        for combo in itertools.product(SPACE_OPS, repeat=len(used)):
            block_ops = [CONV1X1] * space.steps
            for v, op in zip(used, combo):
                block_ops[v - 1] = op
            yield _spec(space, set(edges), block_ops)


@functools.cache
def reachable_hashes(space: Space) -> frozenset[str]:
    """The NAS-Bench-101 keys (`nb101.spec_hash`) of every cell the space can express (cached:
    space 3 takes tens of seconds)."""
    out = set()
    for matrix, ops in enumerate_specs(space):
        pruned = nb101.prune(matrix, ops)
        assert pruned is not None
        out.add(nb101.hash_module(pruned[0], nb101.labels(pruned[1])))
    return frozenset(out)
