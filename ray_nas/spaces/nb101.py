"""NAS-Bench-101 cells in pure Python: validation, pruning and the official graph hash.

A cell ("module spec") is a square 0/1 upper-triangular adjacency matrix over V vertices (a list
of lists; ``matrix[i][j] == 1`` is an edge i -> j) and V op names: vertex 0 is ``input``, vertex
V-1 is ``output``, the others are one of `OPS`. The benchmark keys each trained cell by the hash of
its *pruned* spec (`spec_hash`), which is invariant under vertex relabelling.

Everything here mirrors google-research/nasbench (``nasbench/lib/graph_util.py`` ``hash_module``,
``nasbench/lib/model_spec.py`` ``ModelSpec._prune`` / ``hash_spec``, ``nasbench/api.py``
``is_valid``) without NumPy or TensorFlow. Degrees are Python ints throughout: the official code
hashes ``str((out_degree, in_degree, label))``, and with NumPy 2 the text of a NumPy integer in a
tuple is ``np.int64(1)``, which would silently change every hash.

Cheap to import (hashlib only); `ray_nas.nb101_hash` is this module's `nb101_hash`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

INPUT = "input"
OUTPUT = "output"
CONV3X3 = "conv3x3-bn-relu"
CONV1X1 = "conv1x1-bn-relu"
MAXPOOL3X3 = "maxpool3x3"

#: The benchmark's op names in its canonical order (``config['available_ops']``): the hash label
#: of an intermediate vertex is its index here; input is -1, output -2.
OPS: tuple[str, ...] = (CONV3X3, CONV1X1, MAXPOOL3X3)

#: The benchmark's limits on a cell: at most 7 vertices and 9 edges.
MAX_VERTICES = 7
MAX_EDGES = 9

Matrix = list[list[int]]


def _rows(matrix) -> list:
    """`matrix` as a list of rows (a NumPy array is converted with ``tolist``)."""
    if hasattr(matrix, "tolist"):
        matrix = matrix.tolist()
    if isinstance(matrix, (str, bytes)) or not isinstance(matrix, Sequence):
        raise ValueError(f"matrix must be a list of lists of 0/1, got {type(matrix).__name__}")
    return list(matrix)


def check_matrix(matrix) -> Matrix:
    """`matrix` as a list of lists of Python ints, after checking it is square, 0/1 and strictly
    upper-triangular; raises ValueError (one line) naming the first offending entry."""
    rows = _rows(matrix)
    n = len(rows)
    if n < 2:
        raise ValueError(f"matrix must have at least 2 vertices (input, output), got {n}")
    out: Matrix = []
    for i, row in enumerate(rows):
        row = _rows(row)
        if len(row) != n:
            raise ValueError(f"matrix must be square: row {i} has {len(row)} entries, not {n}")
        ints = []
        for j, v in enumerate(row):
            if v not in (0, 1):
                raise ValueError(f"matrix[{i}][{j}] = {v!r}: entries must be 0 or 1")
            if v and j <= i:
                raise ValueError(
                    f"matrix[{i}][{j}] = 1: matrix must be upper triangular (edges i -> j, i < j)"
                )
            ints.append(int(v))
        out.append(ints)
    return out


def check_ops(ops: Sequence[str], n: int) -> list[str]:
    """`ops` as a list after checking: `n` names, ``input`` first, ``output`` last, `OPS` between."""
    if isinstance(ops, str):
        raise ValueError(f"ops must be a list of {n} op names, got one string {ops!r}")
    ops = list(ops)
    if len(ops) != n:
        raise ValueError(f"ops has {len(ops)} names but the matrix has {n} vertices")
    if ops[0] != INPUT or ops[-1] != OUTPUT:
        raise ValueError(f"ops must start with {INPUT!r} and end with {OUTPUT!r}, got {ops}")
    for i, op in enumerate(ops[1:-1], start=1):
        if op not in OPS:
            raise ValueError(f"ops[{i}] = {op!r} is not a NAS-Bench-101 op; valid: {list(OPS)}")
    return ops


def check_spec(matrix, ops: Sequence[str]) -> tuple[Matrix, list[str]]:
    """(matrix, ops) normalised to Python lists, or ValueError (see `check_matrix`, `check_ops`)."""
    m = check_matrix(matrix)
    return m, check_ops(ops, len(m))


def labels(ops: Sequence[str]) -> list[int]:
    """Hash labels of `ops`: input -1, output -2, an op its index in `OPS`."""
    return [-1] + [OPS.index(op) for op in ops[1:-1]] + [-2]


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def hash_module(matrix: Matrix, labeling: Sequence[int]) -> str:
    """The official ``graph_util.hash_module`` on an already checked matrix and int labels.

    Start hash of vertex v = MD5 of the text of ``(out_degree, in_degree, label)``; V times: new
    hash = MD5 of (sorted in-neighbour hashes joined) | (sorted out-neighbour hashes joined) |
    own hash; fingerprint = MD5 of the text of the sorted list of vertex hashes (32 hex chars).
    """
    n = len(matrix)
    preds = [[w for w in range(n) if matrix[w][v]] for v in range(n)]
    succs = [[w for w in range(n) if matrix[v][w]] for v in range(n)]
    # str() of a tuple of Python ints, as the official code after .tolist()
    hashes = [_md5(str((len(succs[v]), len(preds[v]), int(labeling[v])))) for v in range(n)]
    for _ in range(n):
        hashes = [
            _md5(
                f"{''.join(sorted([hashes[w] for w in preds[v]]))}|"
                f"{''.join(sorted([hashes[w] for w in succs[v]]))}|{hashes[v]}"
            )
            for v in range(n)
        ]
    return _md5(str(sorted(hashes)))


def nb101_hash(matrix, ops: Sequence[str]) -> str:
    """NAS-Bench-101 graph hash of the cell exactly as given (no pruning): 32 hex characters.

    `matrix`: square 0/1 upper-triangular list of lists (or array); `ops`: the op names including
    ``input`` and ``output``. Equal to the official ``hash_module(matrix, labeling)``; the
    benchmark's keys are the hashes of *pruned* specs, so for a lookup key use `spec_hash` (or
    `prune` first). Raises ValueError (one line) for a malformed matrix or an unknown op.
    """
    m, ops = check_spec(matrix, ops)
    return hash_module(m, labels(ops))


def _reach(matrix: Matrix, start: int, forward: bool) -> set[int]:
    n = len(matrix)
    seen = {start}
    frontier = [start]
    while frontier:
        top = frontier.pop()
        nexts = range(top + 1, n) if forward else range(0, top)
        for v in nexts:
            edge = matrix[top][v] if forward else matrix[v][top]
            if edge and v not in seen:
                seen.add(v)
                frontier.append(v)
    return seen


def prune(matrix, ops: Sequence[str]) -> tuple[Matrix, list[str]] | None:
    """The NAS-Bench-101 pruning (``ModelSpec._prune``): drop every vertex that is not on a path
    from input to output, keeping the order of the others.

    Returns the pruned (matrix, ops), or None when no path joins input to output (the official
    ``valid_spec = False``). Raises ValueError for a malformed spec.
    """
    m, ops = check_spec(matrix, ops)
    n = len(m)
    keep = sorted(_reach(m, 0, True) & _reach(m, n - 1, False))
    if len(keep) < 2:
        return None
    return [[m[i][j] for j in keep] for i in keep], [ops[i] for i in keep]


def spec_hash(matrix, ops: Sequence[str]) -> str | None:
    """The benchmark key of a cell: `nb101_hash` of its pruned spec (the official
    ``ModelSpec(matrix, ops).hash_spec(OPS)``); None when input and output are not connected."""
    pruned = prune(matrix, ops)
    return None if pruned is None else hash_module(pruned[0], labels(pruned[1]))


def num_edges(matrix: Matrix) -> int:
    """Number of edges (ones) of a checked matrix."""
    return sum(sum(row) for row in matrix)


def is_valid(matrix, ops: Sequence[str]) -> bool:
    """True if the pruned cell is inside the benchmark's space (``api.NASBench.is_valid``):
    input joined to output, at most `MAX_VERTICES` vertices and `MAX_EDGES` edges after pruning.
    Raises ValueError for a malformed spec (bad shape, unknown op)."""
    pruned = prune(matrix, ops)
    if pruned is None:
        return False
    return len(pruned[0]) <= MAX_VERTICES and num_edges(pruned[0]) <= MAX_EDGES


def to_adjacency_string(matrix: Matrix) -> str:
    """Row-major 0/1 string of a checked matrix (the record file's adjacency format)."""
    return "".join(str(v) for row in matrix for v in row)


def from_adjacency_string(text: str) -> Matrix:
    """The matrix of a row-major 0/1 string of length V*V (the record file's format)."""
    n = int(round(len(text) ** 0.5))
    if n < 2 or n * n != len(text) or set(text) - {"0", "1"}:
        raise ValueError(f"adjacency {text[:60]!r} is not a row-major 0/1 string of length V*V")
    rows = [text[i * n : (i + 1) * n] for i in range(n)]
    for i, row in enumerate(rows):
        if "1" in row[: i + 1]:
            raise ValueError(f"adjacency {text!r}: row {i} has an edge on or below the diagonal")
    return [[1 if c == "1" else 0 for c in row] for row in rows]
