"""`ray-nas` command line: argument parsing only; each command calls one stage's entry point."""

from __future__ import annotations

import argparse
import os
import sys

from ray_nas.algorithms import describe_algorithms
from ray_nas.analysis import format_restore_table
from ray_nas.cli import commands
from ray_nas.config import SpecError
from ray_nas.errors import WorkerKilled, first_line


def _add_job(p: argparse.ArgumentParser) -> None:
    p.add_argument("job", help="job YAML, e.g. jobs/quickstart.yaml")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted override of a job key, e.g. --set search.epochs=3 (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ray-nas",
        description="Sweeps of differentiable architecture search (DARTS-V1/V2, GAEA, DrNAS, "
        "SDARTS, SNAS, GDAS, NASP, PC-DARTS on NAS-Bench-201, the DARTS space and "
        "NAS-Bench-1Shot1) on Ray: Parquet trajectories, offline stop criteria, MLflow, an HTML "
        "report",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "sweep", help="run (or resume) the job's sweep on Ray, then the offline stage"
    )
    p.set_defaults(run=_sweep)
    _add_job(p)
    p.add_argument("--dry-run", action="store_true", help="print the expanded grid and exit")
    p.add_argument(
        "--no-evaluate", action="store_true", help="skip the offline stage after the sweep"
    )
    p.add_argument(
        "--report",
        action="store_true",
        help="after the offline stage, write the HTML report ({store}/{job}/report.html)",
    )

    p.add_argument(
        "--redo",
        action="append",
        default=[],
        metavar="RUN_ID",
        help="move this trial's files aside (kept under {store}/{job}/redo/) and run it again (repeatable)",
    )

    p = sub.add_parser("search", help="one search in this process (no Ray), written to the store")
    p.set_defaults(run=_search)
    _add_job(p)
    p.add_argument("--quiet", action="store_true", help="no batch progress bar")
    p.add_argument(
        "--redo",
        nargs="?",
        const=True,
        default=False,
        metavar="RUN_ID",
        help="move this search's files aside (kept under {store}/{job}/redo/) and run it again; "
        "on a job with a grid, --redo RUN_ID picks that trial",
    )
    p.add_argument(
        "--trial",
        metavar="RUN_ID",
        help="run this trial of the job's grid (a run_id of `ray-nas sweep JOB --dry-run`) into "
        "the job's store, as the sweep would; also: --set search.<grid axis>=<one of its values>",
    )
    p.add_argument(
        "--trial-index",
        type=int,
        metavar="N",
        help="run the job's N-th trial (0-based, in `--dry-run` order), e.g. $SLURM_ARRAY_TASK_ID",
    )

    p = sub.add_parser(
        "evaluate",
        help="offline stage on the stored trajectories (never reruns the search): criteria, "
        "benchmark lookup (or retraining of newly selected cells where no benchmark covers the "
        "data), selections (other criteria's rows kept), MLflow",
    )
    p.set_defaults(run=lambda a: commands.evaluate_command(a.job, a.overrides, report=a.report))
    _add_job(p)
    p.add_argument(
        "--report",
        action="store_true",
        help="then write the HTML report ({store}/{job}/report.html)",
    )

    p = sub.add_parser(
        "status",
        help="each trial's status, epoch, last valid_acc and ETA, read from the store (also mid-sweep)",
    )
    p.set_defaults(run=lambda a: commands.status_command(a.job, a.overrides, a.watch))
    _add_job(p)
    p.add_argument(
        "--watch",
        nargs="?",
        type=_positive_seconds,
        const=10.0,
        default=None,
        metavar="SECONDS",
        help="print it again every SECONDS (default 10) until no trial is pending or running",
    )

    p = sub.add_parser("report", help="write the job's HTML dashboard")
    p.set_defaults(run=lambda a: commands.report_command(a.job, a.overrides, a.output))
    _add_job(p)
    p.add_argument("-o", "--output", help="output file (default {store}/{job}/report.html)")

    p = sub.add_parser(
        "export",
        help="the selected DARTS-space genotypes as a DARTS genotypes.py (train elsewhere)",
    )
    p.set_defaults(run=lambda a: commands.export_command(a.job, a.overrides, a.output))
    _add_job(p)
    p.add_argument("-o", "--output", help="output file (default {store}/{job}/genotypes.py)")

    p = sub.add_parser("benchmark", help="benchmark tables (NAS-Bench-201, NAS-Bench-101)")
    p.set_defaults(run=_benchmark)
    bsub = p.add_subparsers(dest="benchmark_command", required=True)
    c = bsub.add_parser("convert", help="official NAS-Bench-201 .pth -> compact Parquet table")
    c.add_argument("pth", help="NAS-Bench-201-v1_1-096897.pth")
    c.add_argument("-o", "--output", required=True, help="output Parquet table")
    c = bsub.add_parser(
        "convert-nb101", help="official NAS-Bench-101 .tfrecord -> compact Parquet table (no TF)"
    )
    c.add_argument("tfrecord", help="nasbench_only108.tfrecord (or nasbench_full.tfrecord)")
    c.add_argument("-o", "--output", required=True, help="output Parquet table")
    c.add_argument(
        "--only-1shot1",
        action="store_true",
        help="keep only the cells reachable from the three NAS-Bench-1Shot1 spaces",
    )

    p = sub.add_parser(
        "compare", help="the criteria over several jobs: one table, a rank, an HTML page, MLflow"
    )
    p.set_defaults(run=lambda a: commands.compare_command(a.jobs, a.overrides, a.output))
    p.add_argument(
        "jobs",
        nargs="+",
        metavar="JOB",
        help="job YAMLs (two or more to compare; one gives its rank alone)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted override applied to every job, e.g. --set 'criteria=[final, ss_eq12]'",
    )
    p.add_argument(
        "-o", "--output", help="output page (default {store}/{job}/compare.html of the first job)"
    )

    p = sub.add_parser(
        "criteria", help="list the stop criteria and their parameters (and a job's own functions)"
    )
    p.set_defaults(run=lambda a: commands.criteria_command(a.job))
    p.add_argument("job", nargs="?", help="a job YAML: also list the functions it names")
    p = sub.add_parser("algorithms", help="list the search algorithms and their own job keys")
    p.set_defaults(run=lambda a: _print(describe_algorithms()))

    p = sub.add_parser("analysis", help="the paper's numerical studies")
    p.set_defaults(run=lambda a: _print(format_restore_table(a.lr, t1=a.t1, momentum=a.momentum)))
    asub = p.add_subparsers(dest="analysis_command", required=True)
    r = asub.add_parser(
        "restore", help="Section 2.2: steps to restore the softmax order after the gradient flips"
    )
    r.add_argument("--lr", type=float, nargs="+", default=[0.001, 0.01])
    r.add_argument("--t1", type=int, default=25)
    r.add_argument("--momentum", type=float, default=0.9)
    return parser


#: Set to 1 to see the Python traceback of an unexpected error (for a bug report).
TRACEBACK_ENV = "RAY_NAS_TRACEBACK"


def main(argv: list[str] | None = None) -> int:
    """Run one command. Bad input, a missing or unwritable file, an unreachable server: one line
    on stderr, exit 2. Anything else (a bug): one line and exit 1, the traceback with
    RAY_NAS_TRACEBACK=1."""
    args = build_parser().parse_args(argv)
    if args.command in ("sweep", "search", "evaluate"):  # the `--redo` hints repeat what was typed
        from ray_nas.search import integrity

        integrity.COMMAND_LINE = ["ray-nas", *(sys.argv[1:] if argv is None else map(str, argv))]
    elif "ray_nas.search.integrity" in sys.modules:  # an earlier command of this process
        sys.modules["ray_nas.search.integrity"].COMMAND_LINE = None
    # tracking imports urllib and ssl, a tenth of the CLI's start: imported on use
    from ray_nas.tracking import TrackingError

    try:
        return args.run(args)
    except (SpecError, OSError, ValueError, TrackingError) as e:
        print(f"ray-nas {args.command}: error: {first_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # a sweep's says what finished and how to go on
        print(str(e) or f"ray-nas {args.command}: interrupted", file=sys.stderr)
        return 130
    except WorkerKilled as e:  # not a bug: out of memory, most likely; the line says what to do
        print(f"ray-nas {args.command}: error: {first_line(e)}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - never a traceback for the user
        if os.environ.get(TRACEBACK_ENV) == "1":
            raise
        print(
            f"ray-nas {args.command}: unexpected error: {type(e).__name__}: {first_line(e)} "
            f"(rerun with {TRACEBACK_ENV}=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


def _search(a: argparse.Namespace) -> int:
    return commands.search_command(
        a.job,
        a.overrides,
        progress=not a.quiet,
        redo=a.redo,
        trial=a.trial,
        trial_index=a.trial_index,
    )


def _sweep(a: argparse.Namespace) -> int:
    return commands.sweep_command(
        a.job, a.overrides, dry_run=a.dry_run, evaluate=not a.no_evaluate, redo=tuple(a.redo),
        report=a.report,
    )  # fmt: skip


def _positive_seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text!r}")
    return v


def _print(text: str) -> int:
    print(text)
    return 0


def _benchmark(args: argparse.Namespace) -> int:
    if args.benchmark_command == "convert-nb101":
        from ray_nas.tables.nb101 import convert as convert_nb101  # pandas: imported on use

        df = convert_nb101(args.tfrecord, args.output, only_1shot1=args.only_1shot1)
    else:
        from ray_nas.tables import convert  # pandas: imported on use

        df = convert(args.pth, args.output)
    print(f"wrote {len(df)} architectures to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
