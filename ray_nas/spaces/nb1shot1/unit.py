"""The three NAS-Bench-1Shot1 search spaces (`nb1shot1_s1`, `nb1shot1_s2`, `nb1shot1_s3`): the
space units (pure data, no torch), discretisation into a NAS-Bench-101 cell, and enumeration of
every reachable cell. The supernet is ray_nas.spaces.nb1shot1.supernet, built on demand.

Source: automl/nasbench-1shot1 (``nasbench_analysis/search_spaces/search_space_{1,2,3}.py``,
``optimizers/darts/model_search.py``, ``nasbench_analysis/eval_darts_one_shot_model_in_nasbench.py``);
Each space is a NAS-Bench-101 cell whose vertices are
0 = input, 1..steps = choice blocks, steps+1 = output, with a fixed number of parents per vertex
(9 edges in all). One set of architecture weights is shared by all 9 cells of the supernet
(upstream's names; shapes for steps = 4, 4, 5 choice blocks):

=================  ===============  ==========================================================
group              shape            meaning
=================  ===============  ==========================================================
``mixed_op``       [steps, 3]       op of each choice block, columns in `SPACE_OPS` order
``output``         [1, steps + 1]   which of {input, block 1..steps} feed the output (index = vertex)
``inputs_<v>``     [1, v]           parents of vertex v (index = parent vertex), for each vertex
                                    of `choice_vertices`; the other vertices' parents are fixed
=================  ===============  ==========================================================

The unit's contract (ray_nas.spaces.base.Space):

- ops = `SPACE_OPS` (maxpool3x3, conv3x3-bn-relu, conv1x1-bn-relu), the supernet's columns; all
  three always (no op subsets); cell_types = ("shared",); edges = one row per choice block,
  ``v1`` .. ``v<steps>`` (its NAS-Bench-101 vertex). So `mixed_op` is the usual op parameter
  [R, K] = [steps, 3] that magnitudes and every criterion read.
- The connection weights (``output`` and ``inputs_<v>``) are further architecture parameters,
  always softmaxed; `connection_rows` names them for the store: (cell, edge, op) = ("output",
  "out", "v<p>") for each source p = 0..steps of the output, then ("inputs", "v<v>", "v<p>") for
  each choice vertex v and source p < v (``v0`` is the cell input).
- The genotype text (epochs.arch) is the discretised cell as a NAS-Bench-101 spec: one-line JSON
  ``{"matrix":[[0,1,...],...],"ops":["input",...,"output"],"hash":"<32 hex>"}`` with the PRUNED
  adjacency (upper triangular, vertex 0 input, last vertex output) and op names, and its graph
  hash (`nb101.spec_hash`, the NAS-Bench-101 key); `genotype_key` and `benchmark_key` are the
  hash; `brief` is e.g. ``3f2a9c1e c3,mp,c1 5v/6e``; `skip_count` is always 0 (no skip op).

Spaces 1 and 2 have 4 choice blocks; their 6-vertex cell gets an unused dummy vertex (op
``conv1x1-bn-relu``, no edges) at index 5 so that the NAS-Bench-101 matrix is 7x7, exactly as the
upstream code does; pruning removes it again. No torch: weights are nested sequences of floats
(a tensor's ``tolist()``) or NumPy arrays.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from ray_nas.spaces import nb101
from ray_nas.spaces.base import Space
from ray_nas.spaces.nb1shot1.ops import DUMMY_VERTEX, SHORT_OPS, SPACE_OPS
from ray_nas.spaces.nb101 import CONV1X1, CONV3X3, INPUT, OUTPUT, Matrix


@dataclass(frozen=True, kw_only=True)
class NB1Shot1Space(Space):
    """One NAS-Bench-1Shot1 search space (a Space unit; see the module docstring).

    `num_parents[v-1]` is the number of parents of vertex v (v = 1..steps for the choice blocks,
    steps+1 for the output); `min_test_error` / `min_valid_error` are the best NAS-Bench-101
    errors (fractions, mean of 3 runs at 108 epochs) in the space as the upstream code gives them.
    """

    name: str
    number: int
    num_parents: tuple[int, ...]
    min_test_error: float
    min_valid_error: float

    ops: ClassVar[tuple[str, ...]] = SPACE_OPS
    cell_types: ClassVar[tuple[str, ...]] = ("shared",)
    magnitude_cell: ClassVar[str] = "shared"
    criteria_ops: ClassVar[tuple[str, ...]] = (CONV3X3,)  # the 3x3 conv, as NB201's nor_conv_3x3
    learnable_ops: ClassVar[frozenset[str]] = frozenset({CONV3X3, CONV1X1})
    benchmark_key_column: ClassVar[str] = "hash"
    default_layers: ClassVar[int | None] = 9  # the 1Shot1 supernet's 9 cells (3 stacks of 3)
    report_sections: ClassVar[tuple[str, ...]] = ("figure4",)

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

    # -- the Space interface ------------------------------------------------------------------

    @property
    def edges(self) -> tuple[str, ...]:  # type: ignore[override]
        """One row per choice block: ``v1`` .. ``v<steps>`` (its vertex in the cell)."""
        return tuple(f"v{v}" for v in range(1, self.steps + 1))

    def connection_rows(self, cfg=None) -> tuple[tuple[str, str, str], ...]:
        """(cell, edge, op) of each connection weight, in the flat order of `connection_groups`:
        ("output", "out", "v<p>") for p = 0..steps, then ("inputs", "v<v>", "v<p>") for each
        choice vertex v and p = 0..v-1."""
        return tuple(
            (group, target, f"v{p}")
            for group, target, n in self.connection_groups()
            for p in range(n)
        )

    def connection_groups(self) -> tuple[tuple[str, str, int], ...]:
        """(cell, edge, number of sources) per connection-weight vector: the output's (steps+1
        sources), then each choice vertex's (v sources), upstream's ``arch_parameters`` order."""
        groups = [("output", "out", self.steps + 1)]
        groups += [("inputs", f"v{v}", v) for v in self.choice_vertices]
        return tuple(groups)

    def validate_ops(self, ops: Sequence[str]) -> tuple[str, ...]:
        """All three ops in `SPACE_OPS` order; ValueError (one line) for anything else (the
        1Shot1 spaces have no op subsets)."""
        ops = super().validate_ops(ops)
        if ops != SPACE_OPS:
            raise ValueError(
                f"{self.name} searches all of {', '.join(SPACE_OPS)}; no op subsets "
                f"(leave search.ops unset), got {', '.join(ops)}"
            )
        return ops

    def cell_of(self, weights, connections=None) -> Cell:
        """The discretised cell of op weights [steps, 3] (`SPACE_OPS` columns) and connection
        weights [C] (flat, `connection_rows` order; raw or softmaxed). Without connection weights
        every connection vector is uniform, so its top-k are the lowest-index sources."""
        flat = [0.0] * len(self.connection_rows()) if connections is None else connections
        if hasattr(flat, "tolist"):
            flat = flat.tolist()
        if len(flat) != len(self.connection_rows()):
            raise ValueError(
                f"{self.name}: {len(self.connection_rows())} connection weights expected, "
                f"got {len(flat)}"
            )
        vectors, i = {}, 0
        for group, target, n in self.connection_groups():
            vectors[(group, target)] = flat[i : i + n]
            i += n
        inputs = {int(t[1:]): w for (g, t), w in vectors.items() if g == "inputs"}
        return discretise(self, weights, vectors[("output", "out")], inputs)

    def genotype_text(self, weights, ops: Sequence[str], connections=None) -> str:
        """The discretised cell's text (see the module docstring); `connections` as `cell_of`."""
        if tuple(ops) != SPACE_OPS:
            raise ValueError(f"{self.name}: op columns must be {list(SPACE_OPS)}, got {list(ops)}")
        return cell_text(self.cell_of(weights, connections))

    def arch_of(self, model, weights) -> str:
        """The cell of the recorded op distribution [steps, 3] and the supernet's connection
        weights (`model.connection_weights()`, softmaxed, [C])."""
        conn = model.connection_weights().detach().float().cpu().numpy()
        return self.genotype_text(weights.detach().float().cpu().numpy(), model.op_names, conn)

    def check_genotype(self, text: str) -> str:
        parse_cell_text(text)
        return text

    def genotype_key(self, text: str) -> str:
        """The NAS-Bench-101 graph hash of the cell (equal for isomorphic cells)."""
        return parse_cell_text(text)[2]

    def benchmark_key(self, text: str) -> str:
        """The NAS-Bench-101 table's key of the cell: its graph hash (column `hash`)."""
        return parse_cell_text(text)[2]

    def brief(self, text: str) -> str:
        """``<hash[:8]> <ops of the pruned cell> <V>v/<E>e``, e.g. ``3f2a9c1e c3,mp,c1 5v/6e``."""
        matrix, ops, key = parse_cell_text(text)
        short = ",".join(SHORT_OPS[o] for o in ops[1:-1])
        return f"{key[:8]} {short} {len(matrix)}v/{nb101.num_edges(matrix)}e"

    def skip_count(self, text: str, cell: str) -> int:
        """0: the 1Shot1 spaces have no skip_connect op."""
        parse_cell_text(text)
        return 0

    def build_supernet(self, cfg, num_classes: int):
        from ray_nas.spaces.nb1shot1.supernet import build_supernet  # torch: imported on use

        return build_supernet(self, cfg, num_classes)


SPACES: dict[str, NB1Shot1Space] = {
    s.name: s
    for s in (
        NB1Shot1Space(
            name=f"nb1shot1_s{n}", number=n, num_parents=p, min_test_error=t, min_valid_error=v
        )  # fmt: skip
        for n, p, t, v in (
            (1, (1, 2, 2, 2, 2), 0.05448716878890991, 0.049278855323791504),
            (2, (1, 1, 2, 2, 3), 0.057592153549194336, 0.051582515239715576),
            (3, (1, 1, 1, 2, 2, 2), 0.05338543653488159, 0.04847759008407593),
        )
    )
}
#: the registry's units (ray_nas.spaces: "ray_nas.spaces.nb1shot1:SPACE_S1", ...)
SPACE_S1, SPACE_S2, SPACE_S3 = SPACES.values()


def get_space(name: str) -> NB1Shot1Space:
    """The space called `name`; ValueError (one line, listing the valid names) otherwise."""
    try:
        return SPACES[name]
    except KeyError:
        raise ValueError(
            f"unknown NAS-Bench-1Shot1 space {name!r}; valid: {list(SPACES)}"
        ) from None


# --------------------------------------------------------------------------------------------
# The genotype text
# --------------------------------------------------------------------------------------------


def cell_text(cell: Cell) -> str:
    """The cell's genotype text: compact JSON of its pruned spec and hash (module docstring)."""
    body = {"matrix": cell.pruned_matrix, "ops": cell.pruned_ops, "hash": cell.hash}
    return json.dumps(body, separators=(",", ":"))


def parse_cell_text(text: str) -> tuple[Matrix, list[str], str]:
    """(pruned matrix, ops, hash) of a genotype text; ValueError (one line) when it is not JSON
    with exactly those keys, not a pruned NAS-Bench-101 spec, or the hash does not match."""
    try:
        body = json.loads(text)
    except (TypeError, json.JSONDecodeError):
        raise ValueError(f"not a NAS-Bench-101 cell text: {str(text)[:80]!r}") from None
    if not isinstance(body, dict) or set(body) != {"matrix", "ops", "hash"}:
        raise ValueError(
            f'a NAS-Bench-101 cell text is {{"matrix": ..., "ops": ..., "hash": ...}}, '
            f"got {str(text)[:80]!r}"
        )
    matrix, ops = nb101.check_spec(body["matrix"], body["ops"])
    if nb101.prune(matrix, ops) != (matrix, ops):
        raise ValueError(f"cell text {str(text)[:80]!r}: the spec is not pruned")
    key = nb101.hash_module(matrix, nb101.labels(ops))
    if body["hash"] != key:
        raise ValueError(f"cell text: hash {body['hash']!r} is not the spec's hash {key!r}")
    return matrix, ops, key


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


def _feeding_edges(
    space: NB1Shot1Space, parents: Mapping[int, Sequence[int]]
) -> set[tuple[int, int]]:
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


def _spec(space: NB1Shot1Space, edges: set[tuple[int, int]], block_ops: Sequence[str]):
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
    space: NB1Shot1Space, parents: Mapping[int, Sequence[int]], block_ops: Sequence[str]
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
    space: NB1Shot1Space,
    mixed_op: Sequence[Sequence[float]],
    output: Sequence[float],
    inputs: Sequence[Sequence[float]] | Mapping[int, Sequence[float]],
) -> Cell:
    """The cell chosen by architecture weights (raw or softmaxed; see `NB1Shot1Space.alpha_shapes`).

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


def num_configurations(space: NB1Shot1Space) -> int:
    """Number of (parent sets, block ops) choices of the space, loose ends included."""
    graphs = math.prod(len(space.parent_options(v)) for v in range(1, space.output_vertex + 1))
    return graphs * len(SPACE_OPS) ** space.steps


def graphs(space: NB1Shot1Space) -> list[frozenset[tuple[int, int]]]:
    """Every distinct edge set a choice of parents can give once loose ends are dropped (the
    edges of the vertices that feed the output), in a fixed order."""
    options = [space.parent_options(v) for v in range(1, space.output_vertex + 1)]
    seen: dict[frozenset[tuple[int, int]], None] = {}
    for combo in itertools.product(*options):
        parents = dict(zip(range(1, space.output_vertex + 1), combo))
        seen.setdefault(frozenset(_feeding_edges(space, parents)), None)
    return list(seen)


def enumerate_specs(space: NB1Shot1Space) -> Iterator[tuple[Matrix, list[str]]]:
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
def reachable_hashes(space: NB1Shot1Space) -> frozenset[str]:
    """The NAS-Bench-101 keys (`nb101.spec_hash`) of every cell the space can express (cached:
    space 3 takes tens of seconds)."""
    out = set()
    for matrix, ops in enumerate_specs(space):
        pruned = nb101.prune(matrix, ops)
        assert pruned is not None
        out.add(nb101.hash_module(pruned[0], nb101.labels(pruned[1])))
    return frozenset(out)
