"""ray_nas.spaces.nb1shot1: the three NAS-Bench-1Shot1 spaces, discretisation, enumeration."""

from __future__ import annotations

import json
import math
import random

import pytest

from ray_nas import spaces
from ray_nas.spaces import nb1shot1, nb101
from ray_nas.spaces.nb1shot1 import SPACES, discretise
from ray_nas.spaces.nb101 import CONV1X1, CONV3X3, INPUT, MAXPOOL3X3, OUTPUT

S1, S2, S3 = (SPACES[f"nb1shot1_s{k}"] for k in (1, 2, 3))

# one-hot rows of the mixed-op weights, columns in SPACE_OPS order (maxpool, conv3x3, conv1x1)
POOL, C3, C1 = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]


def _softmax(row):
    e = [math.exp(v) for v in row]
    return [v / sum(e) for v in e]


# --------------------------------------------------------------------------------------------
# Structure: upstream search_space_{1,2,3}.py (parents per vertex) and model_search.py
# `_initialize_alphas` (weight shapes), automl/nasbench-1shot1@cb0f0ec
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("space", "parents", "shapes"),
    [
        (
            S1,
            (1, 2, 2, 2, 2),
            {"mixed_op": (4, 3), "output": (1, 5), "inputs_3": (1, 3), "inputs_4": (1, 4)},
        ),
        (
            S2,
            (1, 1, 2, 2, 3),
            {
                "mixed_op": (4, 3),
                "output": (1, 5),
                "inputs_2": (1, 2),
                "inputs_3": (1, 3),
                "inputs_4": (1, 4),
            },
        ),
        (
            S3,
            (1, 1, 1, 2, 2, 2),
            {
                "mixed_op": (5, 3),
                "output": (1, 6),
                "inputs_2": (1, 2),
                "inputs_3": (1, 3),
                "inputs_4": (1, 4),
                "inputs_5": (1, 5),
            },
        ),
    ],
)
def test_space_structure_and_weight_shapes(space, parents, shapes):
    assert space.num_parents == parents
    assert space.num_edges == 9  # NAS-Bench-101's edge cap
    assert space.alpha_shapes() == shapes
    assert space.has_dummy == (space.steps == 4)
    assert nb1shot1.SPACE_OPS == (MAXPOOL3X3, CONV3X3, CONV1X1)


def test_unknown_space_is_a_one_line_error():
    with pytest.raises(ValueError, match="unknown NAS-Bench-1Shot1 space 'nb1shot1_s4'; valid"):
        nb1shot1.get_space("nb1shot1_s4")


# --------------------------------------------------------------------------------------------
# The space units behind the registry (ray_nas.spaces)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("space", [S1, S2, S3])
def test_registry_units_rows_and_connection_rows(space):
    assert spaces.get_space(space.name) is space
    assert space.ops == nb1shot1.SPACE_OPS and space.cell_types == ("shared",)
    assert space.rows() == tuple(("shared", f"v{v}") for v in range(1, space.steps + 1))
    conn = space.connection_rows()
    shapes = space.alpha_shapes()
    assert len(conn) == sum(c for k, (_, c) in shapes.items() if k != "mixed_op")
    assert conn[: space.steps + 1] == tuple(
        ("output", "out", f"v{p}") for p in range(space.steps + 1)
    )
    assert {e for c, e, _ in conn if c == "inputs"} == {f"v{v}" for v in space.choice_vertices}
    assert space.benchmark_key_column == "hash"
    with pytest.raises(ValueError, match="no op subsets"):
        space.validate_ops([MAXPOOL3X3, CONV3X3])
    assert space.validate_ops([CONV1X1, CONV3X3, MAXPOOL3X3]) == nb1shot1.SPACE_OPS


def test_genotype_text_is_the_pruned_spec_with_its_hash_and_round_trips():
    conn = (
        [0.9, 0.1, 0.1, 0.2, 0.8] + [0.6, 0.1, 0.3] + [0.1, 0.2, 0.3, 0.4]
    )  # as the S1 case below
    text = S1.genotype_text([C3, POOL, C1, C3], S1.ops, conn)
    cell = discretise(S1, [C3, POOL, C1, C3], conn[:5], [conn[5:8], conn[8:]])
    assert json.loads(text) == {
        "matrix": cell.pruned_matrix,
        "ops": cell.pruned_ops,
        "hash": cell.hash,
    }
    assert S1.check_genotype(text) == text
    assert S1.genotype_key(text) == S1.benchmark_key(text) == cell.hash
    assert S1.brief(text) == f"{cell.hash[:8]} c3,mp,c1,c3 6v/9e"
    assert S1.skip_count(text, "shared") == 0
    # without connection weights every vector is uniform: the lowest-index sources
    plain = json.loads(S1.genotype_text([C3] * 4, S1.ops))
    assert plain["matrix"] == [[0, 1, 1], [0, 0, 1], [0, 0, 0]]  # output <- {input, block 1}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("Genotype(normal=[])", "not a NAS-Bench-101 cell text"),
        ('{"matrix": [[0, 1], [0, 0]], "ops": ["input", "output"]}', "is {"),
        (
            '{"matrix": [[0, 1], [0, 0]], "ops": ["input", "conv9x9", "output"], "hash": ""}',
            "ops has 3",
        ),
        (
            '{"matrix": [[0, 1, 0], [0, 0, 0], [0, 0, 0]], "ops": ["input", "maxpool3x3", "output"], '
            '"hash": ""}',
            "not pruned",
        ),
        (
            '{"matrix": [[0, 1], [0, 0]], "ops": ["input", "output"], "hash": "abc"}',
            "is not the spec",
        ),
    ],
)
def test_a_bad_cell_text_is_a_one_line_error(text, match):
    with pytest.raises(ValueError, match=match) as e:
        S2.check_genotype(text)
    assert "\n" not in str(e.value)


# --------------------------------------------------------------------------------------------
# Discretisation on hand-made weights
# --------------------------------------------------------------------------------------------


def test_space1_discretisation_gives_the_expected_matrix_and_prunes_the_dummy():
    cell = discretise(
        S1,
        mixed_op=[C3, POOL, C1, C3],
        output=[0.9, 0.1, 0.1, 0.2, 0.8],  # -> output parents {input, block 4}
        inputs=[[0.6, 0.1, 0.3], [0.1, 0.2, 0.3, 0.4]],  # vertex 3 <- {0, 2}; vertex 4 <- {2, 3}
    )
    assert cell.parents == {1: (0,), 2: (0, 1), 3: (0, 2), 4: (2, 3), 5: (0, 4)}
    assert cell.matrix == [
        [0, 1, 1, 1, 0, 0, 1],
        [0, 0, 1, 0, 0, 0, 0],
        [0, 0, 0, 1, 1, 0, 0],
        [0, 0, 0, 0, 1, 0, 0],
        [0, 0, 0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0, 0, 0],  # the dummy vertex
        [0, 0, 0, 0, 0, 0, 0],
    ]
    assert cell.ops == [INPUT, CONV3X3, MAXPOOL3X3, CONV1X1, CONV3X3, CONV1X1, OUTPUT]
    assert cell.pruned_matrix == [
        [0, 1, 1, 1, 0, 1],
        [0, 0, 1, 0, 0, 0],
        [0, 0, 0, 1, 1, 0],
        [0, 0, 0, 0, 1, 0],
        [0, 0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0, 0],
    ]
    assert cell.pruned_ops == [INPUT, CONV3X3, MAXPOOL3X3, CONV1X1, CONV3X3, OUTPUT]
    assert cell.hash == nb101.spec_hash(cell.matrix, cell.ops)
    assert cell.hash == nb101.nb101_hash(cell.pruned_matrix, cell.pruned_ops)


def test_space2_loose_ends_lose_their_edges_and_are_pruned():
    cell = discretise(
        S2,
        mixed_op=[POOL, C3, C1, C3],
        output=[0.9, 0.8, 0.1, 0.7, 0.0],  # -> {input, block 1, block 3}
        inputs={2: [0.2, 0.8], 3: [0.5, 0.4, 0.1], 4: [0.1, 0.2, 0.3, 0.9]},
    )
    assert cell.parents == {1: (0,), 2: (1,), 3: (0, 1), 4: (2, 3), 5: (0, 1, 3)}
    # blocks 2 and 4 feed nothing: upstream keeps no edges of theirs
    assert cell.matrix == [
        [0, 1, 0, 1, 0, 0, 1],
        [0, 0, 0, 1, 0, 0, 1],
        [0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0],
    ]
    assert cell.pruned_matrix == [[0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1], [0, 0, 0, 0]]
    assert cell.pruned_ops == [INPUT, MAXPOOL3X3, CONV1X1, OUTPUT]


def test_space3_full_cell_has_no_dummy_and_nothing_to_prune():
    cell = discretise(
        S3,
        mixed_op=[C3, C1, POOL, C3, C1],
        output=[0.0, 0.0, 0.7, 0.0, 0.0, 0.9],  # -> {block 2, block 5}
        inputs=[[0.1, 0.9], [0.1, 0.2, 0.9], [0.9, 0.1, 0.1, 0.8], [0.1, 0.9, 0.1, 0.1, 0.8]],
    )
    assert cell.parents == {1: (0,), 2: (1,), 3: (2,), 4: (0, 3), 5: (1, 4), 6: (2, 5)}
    expected = [
        [0, 1, 0, 0, 1, 0, 0],
        [0, 0, 1, 0, 0, 1, 0],
        [0, 0, 0, 1, 0, 0, 1],
        [0, 0, 0, 0, 1, 0, 0],
        [0, 0, 0, 0, 0, 1, 0],
        [0, 0, 0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0, 0, 0],
    ]
    assert cell.matrix == cell.pruned_matrix == expected
    assert (
        cell.ops
        == cell.pruned_ops
        == [INPUT, CONV3X3, CONV1X1, MAXPOOL3X3, CONV3X3, CONV1X1, OUTPUT]
    )
    assert nb101.num_edges(cell.matrix) == 9


def test_raw_and_softmaxed_weights_give_the_same_cell_and_ties_go_to_the_lower_index():
    rng = random.Random(3)
    shapes = S3.alpha_shapes()
    raw = {
        k: [[rng.gauss(0, 1e-3) for _ in range(c)] for _ in range(r)]
        for k, (r, c) in shapes.items()
    }
    inputs = [raw[f"inputs_{v}"] for v in S3.choice_vertices]
    a = discretise(S3, raw["mixed_op"], raw["output"], inputs)
    b = discretise(
        S3,
        [_softmax(r) for r in raw["mixed_op"]],
        [_softmax(raw["output"][0])],
        [[_softmax(w[0])] for w in inputs],
    )
    assert a == b
    assert nb1shot1.top_k([0.5, 0.5, 0.5], 2) == (0, 1)
    uniform = discretise(S1, [[1.0] * 3] * 4, [0.0] * 5, [[0.0] * 3, [0.0] * 4])
    assert uniform.block_ops == (MAXPOOL3X3,) * 4 and uniform.parents[5] == (0, 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mixed_op": [C3] * 3}, "mixed_op must have 4 rows"),
        ({"mixed_op": [C3, C3, C3, [1.0, 2.0]]}, r"mixed_op\[3\] must hold 3 weights"),
        ({"output": [0.0] * 4}, "output must hold 5 weights"),
        ({"inputs": [[0.0] * 3]}, "inputs must hold 2 weight vectors"),
        ({"inputs": [[0.0] * 3, [0.0, float("nan"), 0.0, 0.0]]}, "inputs_4 has a non-finite"),
    ],
)
def test_bad_weights_get_one_line_errors(kwargs, message):
    args = {"mixed_op": [C3] * 4, "output": [0.0] * 5, "inputs": [[0.0] * 3, [0.0] * 4]}
    with pytest.raises(ValueError, match=message):
        discretise(S1, **{**args, **kwargs})


# --------------------------------------------------------------------------------------------
# Enumeration
# --------------------------------------------------------------------------------------------
# Counts checked during development against the upstream code (automl/nasbench-1shot1@cb0f0ec,
# with google-research/nasbench@b942470's ModelSpec for pruning and hashing):
# - configurations = product over vertices of the number of parent sets, times 3^steps. Space 2's
#   29,160 is the count ../shared/guide/SPACES.md B1 recalls from the 1Shot1 paper; its 6,240 and
#   363,648 for spaces 1 and 3 are marked unverified there and match none of the counts here.
# - upstream's generate_search_space_without_loose_ends() yields 2,487 / 3,609 / 24,066 specs
#   (2,127 / 3,258 / 17,940 distinct hashes). Its recursive generator misses graphs that the
#   DARTS discretisation can produce; all of its hashes are among ours (checked with both codes).
# - the discretisation above equals upstream eval_one_shot_model (7x7 matrix, ops, hash) on 2,000
#   random weight sets per space.
ENUMERATION = {
    # space: (configurations, loose-end-free graphs, specs, distinct hashes or None if not tested)
    "nb1shot1_s1": (14_580, 66, 3_702, 2_685),
    "nb1shot1_s2": (29_160, 190, 12_474, None),  # 7,773 distinct hashes: ~3 s, not run here
    "nb1shot1_s3": (1_312_200, 876, 135_900, None),  # 55,854: ~30 s, not run here
}


@pytest.mark.parametrize("name", list(ENUMERATION))
def test_enumeration_counts(name):
    space = SPACES[name]
    configs, n_graphs, n_specs, n_hashes = ENUMERATION[name]
    assert nb1shot1.num_configurations(space) == configs
    graphs = nb1shot1.graphs(space)
    assert len(graphs) == n_graphs
    assert sum(3 ** len({p for p, _ in edges if p}) for edges in graphs) == n_specs
    if n_hashes is not None:
        specs = list(nb1shot1.enumerate_specs(space))
        assert len(specs) == n_specs
        assert all(len(m) == 7 and len(ops) == 7 for m, ops in specs)
        assert all(nb101.is_valid(m, ops) for m, ops in specs)  # inside NAS-Bench-101
        assert len(nb1shot1.reachable_hashes(space)) == n_hashes


def test_every_discretised_cell_is_enumerated():
    reachable = nb1shot1.reachable_hashes(S1)
    rng = random.Random(0)
    for _ in range(200):
        cell = discretise(
            S1,
            [[rng.random() for _ in range(3)] for _ in range(4)],
            [rng.random() for _ in range(5)],
            [[rng.random() for _ in range(3)], [rng.random() for _ in range(4)]],
        )
        assert cell.hash in reachable


def test_discretise_takes_the_supernet_tensors_as_they_are_shaped():
    import torch

    torch.manual_seed(0)
    shapes = S2.alpha_shapes()
    alphas = {k: 1e-3 * torch.randn(*shape) for k, shape in shapes.items()}  # upstream init
    inputs = [alphas[f"inputs_{v}"] for v in S2.choice_vertices]
    from_tensors = discretise(S2, alphas["mixed_op"], alphas["output"], inputs)
    from_lists = discretise(
        S2, alphas["mixed_op"].tolist(), alphas["output"].tolist()[0], [t.tolist() for t in inputs]
    )
    assert from_tensors == from_lists
    assert from_tensors.hash == nb101.spec_hash(from_tensors.matrix, from_tensors.ops)
