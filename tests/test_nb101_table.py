"""ray_nas.tables.nb101: the NAS-Bench-101 record file -> table converter, and lookups.

The record file is written in the official format with independent code: the protobuf package
(a dependency of Ray) serializes ModelMetrics from the schema of nasbench/lib/model_metrics.proto,
and tensorboardX's TFRecord writer (a dependency of ray[tune]) frames the records.
"""

from __future__ import annotations

import base64
import json
import math

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from tensorboardX.record_writer import RecordWriter

from ray_nas import cli, store
from ray_nas.spaces import nb1shot1, nb101
from ray_nas.spaces.nb101 import CONV1X1, INPUT, MAXPOOL3X3, OUTPUT
from ray_nas.tables import nb101 as nb101_table
from tests.test_nb101 import PUBLISHED_MATRIX, PUBLISHED_OPS

# --------------------------------------------------------------------------------------------
# ModelMetrics from the official .proto schema (proto2, package nasbench)
# --------------------------------------------------------------------------------------------


def _metrics_class():
    f = descriptor_pb2.FileDescriptorProto(
        name="ray_nas_test_model_metrics.proto", package="nasbench_test", syntax="proto2"
    )
    fd = descriptor_pb2.FieldDescriptorProto
    ev = f.message_type.add(name="EvaluationData")
    for number, name in enumerate(
        (
            "current_epoch",
            "training_time",
            "train_accuracy",
            "validation_accuracy",
            "test_accuracy",
        ),
        start=1,
    ):
        ev.field.add(name=name, number=number, type=fd.TYPE_DOUBLE, label=fd.LABEL_OPTIONAL)
    ev.field.add(name="checkpoint_path", number=6, type=fd.TYPE_STRING, label=fd.LABEL_OPTIONAL)
    mm = f.message_type.add(name="ModelMetrics")
    mm.field.add(
        name="evaluation_data", number=1, type=fd.TYPE_MESSAGE, label=fd.LABEL_REPEATED,
        type_name=".nasbench_test.EvaluationData",
    )  # fmt: skip
    mm.field.add(name="trainable_parameters", number=2, type=fd.TYPE_INT32, label=fd.LABEL_OPTIONAL)
    mm.field.add(name="total_time", number=3, type=fd.TYPE_DOUBLE, label=fd.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("nasbench_test.ModelMetrics"))


ModelMetrics = _metrics_class()


def _metrics(params: int, valid: float, test: float, seconds: float, epochs: int) -> str:
    m = ModelMetrics(trainable_parameters=params, total_time=seconds + 100.0)
    for frac in (0.0, 0.5, 1.0):  # initialisation, halfway, end of training
        m.evaluation_data.add(
            current_epoch=frac * epochs,
            training_time=frac * seconds,
            train_accuracy=0.1 + 0.9 * frac,
            validation_accuracy=frac * valid,
            test_accuracy=frac * test,
            checkpoint_path=f"/ckpt/model.ckpt-{int(frac * 100)}",
        )
    return base64.b64encode(m.SerializeToString()).decode("ascii")


def _row(matrix, ops, epochs, metrics) -> bytes:
    text = json.dumps(
        [
            nb101.spec_hash(matrix, ops),
            epochs,
            nb101.to_adjacency_string(matrix),
            ",".join(ops),
            metrics,
        ]
    )
    return text.encode("utf-8")


# Three cells, as the benchmark stores them (pruned): the published cell (7 vertices, in no 1Shot1
# space), a space-1 cell (6 vertices) and a small 4-vertex cell of space 2 (3 output parents).
CELL_A = (PUBLISHED_MATRIX, PUBLISHED_OPS)
CELL_B = nb1shot1.discretise(
    nb1shot1.SPACES["nb1shot1_s1"],
    mixed_op=[[0, 1, 0], [1, 0, 0], [0, 0, 1], [0, 1, 0]],
    output=[0.9, 0.1, 0.1, 0.2, 0.8],
    inputs=[[0.6, 0.1, 0.3], [0.1, 0.2, 0.3, 0.4]],
)
CELL_C = (
    [[0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1], [0, 0, 0, 0]],
    [INPUT, MAXPOOL3X3, CONV1X1, OUTPUT],
)
CELLS = {
    "A": CELL_A,
    "B": (CELL_B.pruned_matrix, CELL_B.pruned_ops),
    "C": CELL_C,
}
# (params, [(valid, test, seconds) of the 3 runs])
RUNS = {
    "A": (
        8_555_530,
        [(0.9242, 0.9212, 1768.0), (0.9246, 0.9191, 1769.0), (0.9305, 0.9216, 1767.0)],
    ),
    "B": (2_694_282, [(0.90, 0.89, 1000.0), (0.91, 0.90, 1010.0), (0.92, 0.91, 1020.0)]),
    "C": (700_000, [(0.80, 0.79, 500.0), (0.81, 0.80, 600.0), (0.85, 0.84, 700.0)]),
}


@pytest.fixture
def record_file(tmp_path):
    """A tiny record file in the official format: 3 cells x 3 runs at 108 epochs, interleaved as
    in the official file, plus one 36-epoch run of cell A that the table must ignore."""
    path = tmp_path / "nasbench_tiny.tfrecord"
    w = RecordWriter(str(path))
    for run in range(3):
        for key, (matrix, ops) in CELLS.items():
            params, runs = RUNS[key]
            valid, test, seconds = runs[run]
            w.write(_row(matrix, ops, 108, _metrics(params, valid, test, seconds, 108)))
    w.write(_row(*CELL_A, 36, _metrics(RUNS["A"][0], 0.5, 0.5, 10.0, 36)))
    w.close()
    return path


def _hash(key: str) -> str:
    return nb101.spec_hash(*CELLS[key])


def test_crc32c_check_value():
    # the CRC-32C check value of "123456789" (RFC 3720 B.4 / CRC catalogue)
    assert nb101_table.crc32c(b"123456789") == 0xE3069283


def test_reader_and_decoder_read_the_official_format(record_file):
    records = [rec for _, rec in nb101_table.iter_records(record_file)]
    assert len(records) == 10
    first = records[0]
    assert first.hash == _hash("A") == "00005c142e6f48ac74fdcf73e3439874"
    assert (first.epochs, first.matrix, first.ops) == (108, CELL_A[0], CELL_A[1])
    assert first.trainable_parameters == 8_555_530
    assert first.total_time == pytest.approx(1868.0)
    assert [e["current_epoch"] for e in first.evaluations] == [0.0, 54.0, 108.0]
    assert first.final["test_accuracy"] == 0.9212 and first.final["training_time"] == 1768.0


def test_convert_then_look_up(record_file, tmp_path):
    out = tmp_path / "nb101.parquet"
    lines: list[str] = []
    df = nb101_table.convert(record_file, out, progress=lines.append, every=4)
    assert len(df) == 3 and list(df.columns) == list(nb101_table.COLUMNS)
    assert any("8 records" in line for line in lines)  # progress every 4 records
    table = nb101_table.load_table(out)
    assert store.read_frame(str(out)).equals(table)
    rows = nb101_table.lookup(table, [_hash("C"), "f" * 32, _hash("A")])
    assert list(rows["hash"]) == [_hash("C"), "f" * 32, _hash("A")]
    for i, key in ((0, "C"), (2, "A")):
        params, runs = RUNS[key]
        assert rows.loc[i, "valid_accuracy"] == pytest.approx(100 * sum(r[0] for r in runs) / 3)
        assert rows.loc[i, "test_accuracy"] == pytest.approx(100 * sum(r[1] for r in runs) / 3)
        assert rows.loc[i, "training_time"] == pytest.approx(sum(r[2] for r in runs) / 3)
        assert rows.loc[i, "params"] == params and rows.loc[i, "runs"] == 3
    assert math.isnan(rows.loc[1, "test_accuracy"])  # unknown hash: NaN, no error
    # a discretised 1Shot1 cell is found from its unpruned 7x7 spec (with the dummy vertex)
    found = nb101_table.lookup_cell(table, CELL_B.matrix, CELL_B.ops)
    assert found["hash"] == CELL_B.hash and found["test_accuracy"] == pytest.approx(90.0)
    assert nb101_table.lookup_cell(table, [[0, 1], [0, 0]], [INPUT, OUTPUT]) is None


def test_only_1shot1_keeps_the_cells_of_the_spaces(record_file, tmp_path):
    df = nb101_table.convert(
        record_file, tmp_path / "s1.parquet", only_1shot1=["nb1shot1_s1"], progress=None
    )
    # the published 7-vertex cell is in no space; C is a space-2 cell (its output has 3 parents)
    assert list(df["hash"]) == [_hash("B")] and df["in_s1"].all() and df["runs"].tolist() == [3]


def test_cli_converts_and_errors_are_one_line_exit_2(record_file, tmp_path, capsys):
    out = tmp_path / "t.parquet"
    assert cli.main(["benchmark", "convert-nb101", str(record_file), "-o", str(out)]) == 0
    assert "wrote 3 architectures" in capsys.readouterr().out
    before = out.read_bytes()

    corrupt = tmp_path / "corrupt.tfrecord"
    data = bytearray(record_file.read_bytes())
    data[40] ^= 0xFF  # inside the first payload
    corrupt.write_bytes(bytes(data))
    assert cli.main(["benchmark", "convert-nb101", str(corrupt), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "data checksum mismatch in the record at byte 0" in err and "\n" not in err

    not_tfrecord = tmp_path / "notes.txt"
    not_tfrecord.write_text("hash,acc\n" * 10)
    assert cli.main(["benchmark", "convert-nb101", str(not_tfrecord), "-o", str(out)]) == 2
    assert "not a TFRecord file" in capsys.readouterr().err

    other = tmp_path / "other.tfrecord"
    w = RecordWriter(str(other))
    w.write(b'{"not": "a benchmark record"}')
    w.close()
    assert cli.main(["benchmark", "convert-nb101", str(other), "-o", str(out)]) == 2
    assert "record at byte 0: not a NAS-Bench-101 record" in capsys.readouterr().err

    empty = tmp_path / "empty.tfrecord"
    empty.write_bytes(b"")
    assert cli.main(["benchmark", "convert-nb101", str(empty), "-o", str(out)]) == 2
    assert "no records (empty file)" in capsys.readouterr().err

    short = tmp_path / "only36.tfrecord"
    w = RecordWriter(str(short))
    w.write(_row(*CELL_A, 36, _metrics(RUNS["A"][0], 0.5, 0.5, 10.0, 36)))
    w.close()
    assert cli.main(["benchmark", "convert-nb101", str(short), "-o", str(out)]) == 2
    assert "no 108-epoch records; nothing written" in capsys.readouterr().err

    assert cli.main(["benchmark", "convert-nb101", str(tmp_path / "nope"), "-o", str(out)]) == 2
    assert "record file not found" in capsys.readouterr().err
    assert out.read_bytes() == before  # nothing already written was touched
