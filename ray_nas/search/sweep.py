"""The sweep on Ray Tune (with its live metrics, metrics.py, the only modules importing ray): one
trial per grid point.

Each trial runs `trial.run_trial`, which keeps its own checkpoint and trajectory on the job's
store, keyed by the stable run_id. So a crashed trial retried by Tune (`max_failures`) resumes
from its last epoch, and a sweep whose driver died is resumed by running the same command again:
finished trials are skipped, unfinished ones resume. Tune's own trial ids are never used as keys.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import sys
import time

from ray_nas import store
from ray_nas.config import (
    JobSpec,
    SearchConfig,
    SpecError,
    resolve_search,
    resolved_job_dict,
    spec_from_dict,
    to_dict,
)
from ray_nas.errors import WorkerKilled
from ray_nas.search.faults import FAULT_ENVS
from ray_nas.search.integrity import (
    FINAL_STATUSES,
    check_job_identity,
    check_store_writable,
    check_trials,
    redo_trial,
    typed_command,
    write_job_yaml,
)
from ray_nas.search.metrics import METRICS, TrialMetrics
from ray_nas.search.trial import run_trial
from ray_nas.spaces import get_space


def check_ray_address(timeout: float = 5.0) -> None:
    """A clear error, within about `timeout` seconds, when RAY_ADDRESS names a host:port nothing
    answers on, or where something other than Ray answers (ray.init would retry for minutes).

    host:port and ray://host:port are gRPC servers (Ray's GCS, the Ray client server): they answer
    an HTTP/2 connection preface with a SETTINGS frame. http(s)://host:port is Ray's dashboard:
    its /api/version names a ray_version."""
    addr = os.environ.get("RAY_ADDRESS", "")
    if not addr or addr == "auto" or addr.startswith("local"):
        return
    scheme, _, hostport = addr.rpartition("://")
    hostport = hostport.rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit() or scheme not in ("", "ray", "http", "https"):
        raise SpecError(
            f"RAY_ADDRESS={addr!r}: expected host:port, ray://host:port or http://host:port"
        )
    try:
        sock = socket.create_connection((host, int(port)), timeout=timeout)
    except OSError as e:
        raise SpecError(
            f"RAY_ADDRESS={addr}: no Ray cluster answers there ({e.strerror or e})"
        ) from None
    with sock:
        why = (
            _dashboard_problem(addr, timeout)
            if scheme.startswith("http")
            else _grpc_problem(sock, timeout)
        )
    if why:
        raise SpecError(
            f"RAY_ADDRESS={addr}: not a Ray cluster ({why}); set it to the head node's GCS "
            "address (host:6379), ray://host:10001 or the dashboard's http://host:8265"
        )


#: the HTTP/2 client connection preface and an empty SETTINGS frame (RFC 9113, 3.4 and 6.5)
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def _grpc_problem(sock: socket.socket, timeout: float) -> str | None:
    """None when the peer speaks HTTP/2 (a gRPC server: its first frame is SETTINGS), else why not."""
    sock.settimeout(timeout)
    try:
        sock.sendall(_H2_PREFACE)
        head = b""
        while len(head) < 9:
            chunk = sock.recv(9 - len(head))
            if not chunk:
                break
            head += chunk
    except TimeoutError:
        return f"nothing answered within {timeout:g}s"
    except OSError as e:
        return f"the connection failed: {e.strerror or e}"
    if len(head) == 9 and head[3] == 0x04:  # frame type SETTINGS
        return None
    if not head:
        return "the connection was closed without an answer"
    if head.startswith((b"HTTP/", b"<")):  # a status line, or an error page without one
        return "an HTTP server answered"
    return f"an unknown protocol answered ({head[:9]!r})"


def _dashboard_problem(addr: str, timeout: float) -> str | None:
    """None when `addr`'s /api/version is Ray's dashboard (JSON naming a ray_version), else why."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{addr.rstrip('/')}/api/version", timeout=timeout) as r:
            body = json.loads(r.read(65536).decode("utf-8", "replace"))
    except TimeoutError:
        return f"nothing answered within {timeout:g}s"
    except urllib.error.HTTPError as e:
        return f"its /api/version answered HTTP {e.code}"
    except (OSError, ValueError) as e:
        return f"its /api/version gave no Ray version ({type(e).__name__})"
    if isinstance(body, dict) and body.get("ray_version"):
        return None
    return "its /api/version names no ray_version"


def _trainable(config: dict, shared: dict) -> None:
    """Tune function trainable: one search, reported to Tune after every epoch. `config` holds
    the trial's run_id and own entry (config["trial"]: run_id, resolved search, grid point);
    `shared` what every trial of the sweep shares (the job, the driver's cwd, fault env,
    epoch_lines), passed once through Ray's object store (tune.with_parameters), not copied
    into each trial's config."""
    from ray import tune

    os.environ.update(shared.get("fault_env") or {})
    if os.path.isdir(
        shared["cwd"]
    ):  # Tune starts trials in their own folder: relative paths are the driver's
        os.chdir(shared["cwd"])
    import torch

    torch.set_num_threads(max(1, int(shared["job"]["resources"]["cpu"])))
    spec = spec_from_dict(shared["job"], source="sweep")
    cfg = resolve_search(config["trial"]["search"], record=True)
    rid = config["trial"]["run_id"]

    space = get_space(cfg.space)
    metrics = TrialMetrics(
        ray_metric, spec.name, rid, cfg.ops, cfg.space
    )  # live Prometheus metrics

    def on_record(rec) -> None:
        metrics.record(rec)
        tune.report({"epoch": rec.epoch, "valid_acc": rec.valid_acc, "train_loss": rec.train_loss,
                     "skips": space.skips(rec.arch), "arch": rec.arch, "run_id": rid})  # fmt: skip

    def log(line: str) -> None:  # a local sweep's driver shows epochs on its progress line
        if shared.get("epoch_lines", True) or not line.startswith("epoch "):
            print(f"[{rid}] {line}")

    status = run_trial(
        spec,
        cfg,
        rid,
        progress=False,
        log=log,
        on_record=on_record,
        claim=False,  # the driver wrote job.yaml (run_sweep) before any trial started
    )
    metrics.close()
    if status == "skipped":
        tune.report({"epoch": cfg.total_epochs, "run_id": rid, "skipped": True})


#: Driver environment variables passed on to every Ray worker of the job (on every node): how to
#: reach an S3 store (endpoint, region, profile, credentials: the standard AWS variables) and the
#: MLflow client's settings. Unset ones are not passed; the nodes' own config applies then.
FORWARDED_ENV_PREFIXES = ("AWS_", "MLFLOW_")


def forwarded_env() -> dict[str, str]:
    """The driver's AWS_* / MLFLOW_* variables, for the job's runtime_env; under `ray job submit`
    those the submitted runtime_env already sets are left to it (Ray refuses a clash)."""
    try:
        job = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR") or "{}")
        taken = set((job.get("runtime_env") or {}).get("env_vars") or {})
    except (ValueError, AttributeError):
        taken = set()
    return {
        k: v
        for k, v in os.environ.items()
        if k.startswith(FORWARDED_ENV_PREFIXES) and k not in taken
    }


def init_ray(resources: dict | None = None) -> None:
    import ray

    if ray.is_initialized():
        return
    check_ray_address()
    env = forwarded_env()
    address = os.environ.get("RAY_ADDRESS") or None
    local = not address or address.startswith("local")  # RAY_ADDRESS=local: a new local Ray
    if local:
        # Ray 2.60 turns token authentication on for a new local instance unless RAY_AUTH_MODE
        # says otherwise, and writes ~/.ray/auth_token (which turns it on for every later Ray
        # use too): a local run keeps to itself and leaves $HOME alone. An explicit setting wins.
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    try:
        ray.init(address=address, log_to_driver=True,
                 runtime_env={"env_vars": env} if env else None,
                 # a local instance's start-up lines (its dashboard is gone when the command ends)
                 logging_level=logging.WARNING if local else logging.INFO,
                 **(resources or {}))  # fmt: skip
    except RuntimeError as e:
        if "Version mismatch" not in str(e):
            raise
        raise SpecError(version_mismatch_line(address, str(e))) from None


def version_mismatch_line(address: str | None, message: str) -> str:
    """One line for Ray's multi-line `Version mismatch` error: a Ray cluster of another Ray or
    Python version answers at RAY_ADDRESS, or runs on this node (which ray.init joins unasked)."""
    where = f"at RAY_ADDRESS={address}" if address else "running on this node"
    versions = re.findall(r"(Ray|Python):\s*(\S+)", message)
    theirs = ", ".join(f"{k} {v}" for k, v in versions[:2]) or "another version"
    ours = ", ".join(f"{k} {v}" for k, v in versions[2:4]) or "this one's"
    return (f"the Ray cluster {where} runs {theirs}, this command {ours}; stop that cluster "
            "(`ray stop` by whoever started it) or run with RAY_ADDRESS=local (a new local Ray "
            "for this command)")  # fmt: skip


def run_sweep(
    spec: JobSpec,
    trials: list[tuple[SearchConfig, str, dict]],
    log=print,
    redo: tuple = (),
    evaluate: bool = False,
) -> dict[str, str]:
    """Run every unfinished trial of the grid on Ray; returns run_id -> final status. The caller
    checks the tracking server first (`tracking.check_tracking`: the offline stage after it logs).

    `redo`: run_ids whose files are moved aside first (see integrity.redo_trial), so they run again.
    `evaluate`: the offline stage follows (its retraining tasks' resources are checked here too).
    """
    check_store_writable(spec)
    check_job_identity(spec)
    from ray_nas.training.data import check_available  # torch: imported on use

    for cfg in {(c.dataset, c.data_root, c.download, c.split_file) for c, _, _ in trials}:
        check_available(*cfg)
    rids = [rid for _, rid, _ in trials]
    unknown = [r for r in redo if r not in rids]
    if unknown:
        raise SpecError(f"--redo {unknown[0]}: not a trial of this grid (`--dry-run` lists them)")
    check_trials(spec, [r for r in rids if r not in redo], "sweep", log=log)
    st = store.read_status(spec.job_dir)
    done = set(st.loc[st["status"].isin(FINAL_STATUSES), "run_id"]) if len(st) else set()
    retrain = evaluate and spec.evaluate.retrain is not None
    if retrain or any(rid not in done or rid in redo for rid in rids):
        init_ray()  # Ray waits forever for resources no node has: refused before any work
        check_resources(spec, log, retrain=retrain)
    for rid in redo:
        folder = redo_trial(spec.job_dir, rid)
        log(
            f"trial {rid}: "
            + (f"files moved to {folder}; it runs again" if folder else "no files yet")
        )
    write_job_yaml(spec)

    st = store.read_status(spec.job_dir)  # one read for the whole grid
    done = set(st.loc[st["status"].isin(FINAL_STATUSES), "run_id"]) if len(st) else set()
    todo = [(cfg, rid, point) for cfg, rid, point in trials if rid not in done]
    log(
        f"sweep {spec.name}: {len(trials)} trials, {len(trials) - len(todo)} already complete, {len(todo)} to run"
    )
    log(f"  trajectories: {spec.job_dir}/{{epochs,alphas}}/run_id=<id>/   "
        f"status: {typed_command(spec, 'status')}")  # fmt: skip
    killed: dict[str, str] = {}  # run_id -> node, of the trials whose worker was killed
    interrupted = False
    if todo:
        try:
            interrupted = _tune(spec, todo, log, killed)
        except KeyboardInterrupt:  # a second Ctrl-C, or one before Tune took over SIGINT
            interrupted = True
    status = store.read_status(spec.job_dir)  # once: the dead trials' rows are mended in it
    if todo and not interrupted:
        status = _close_dead_trials(spec.job_dir, status, [rid for _, rid, _ in todo], killed)
    status = store.consolidate_trials(spec.job_dir, status)
    if not interrupted and not evaluate:  # (an evaluation that follows compacts as it reads)
        _compact(spec.job_dir, log)
    result = dict(zip(status["run_id"], status["status"]))
    if interrupted:
        complete = sum(result.get(rid) in FINAL_STATUSES for rid in rids)
        raise SweepInterrupted(
            f"sweep {spec.name}: interrupted: {complete} of {len(rids)} trials complete, the "
            f"others resume from their last epoch; to go on, rerun "
            f"`{typed_command(spec, 'sweep', flags=True)}`"
        )
    failed = [rid for _, rid, _ in trials if result.get(rid) not in FINAL_STATUSES]
    if failed:
        why = ""
        dead = {rid: node for rid, node in killed.items() if rid in failed}
        if dead:
            why = f"; {len(dead)} of them {killed_hint(', '.join(sorted(set(dead.values()))))}"
        log(f"sweep {spec.name}: {len(failed)} trials did not complete: {', '.join(failed)} "
            f"(rerun the same command to resume them){why}")  # fmt: skip
    diverged = [rid for _, rid, _ in trials if result.get(rid) == "diverged"]
    if diverged:
        log(f"sweep {spec.name}: {len(diverged)} trials diverged (a non-finite loss or alpha): "
            f"{', '.join(diverged)}; see trials.parquet's stop_reason")  # fmt: skip
    return result


def _compact(job_dir: str, log) -> None:
    """The job's compacted copy of its trajectories (`{job}/compact/`, docs/store.md), written
    when the sweep ends: every trial's files were just written for the last time, so none is
    left out as too recent. One line if it cannot be written (the trial files stay the truth)."""
    t0 = time.perf_counter()
    try:
        n = store.write_compact(store.read_job_state(job_dir), settle=0)
    except OSError as e:
        log(f"  note: {job_dir}/{store.COMPACT_DIR}: not written ({e})")
        return
    if n:
        log(f"  compacted {n} trials into {job_dir}/{store.COMPACT_DIR}/ "
            f"({time.perf_counter() - t0:.1f}s)")  # fmt: skip


def _close_dead_trials(job_dir: str, status, rids: list[str], killed: dict[str, str]):
    """After Tune has ended, a trial of this sweep whose status still says `running` is not
    running: its process died without a word (SIGKILL, the OOM killer, a lost node). Its status
    file becomes `failed` with why, so trials.parquet and `ray-nas status` say so; a rerun resumes
    it (a failed trial is not complete). `status`: the job's status rows; returned mended."""
    dead = status["run_id"].isin(rids) & status["status"].eq("running")
    for i in status.index[dead]:
        rid = status.at[i, "run_id"]
        why = (
            f"its process was {killed_hint(killed[rid])}"
            if rid in killed
            else "its process ended without reporting (killed, or its node was lost)"
        )[:500]
        if store.update_status(job_dir, rid, status="failed", error=why, updated=time.time()):
            status.loc[i, ["status", "error"]] = ["failed", why]
    return status


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep: the message says what finished and how to resume (the CLI prints
    it and exits 130); the offline stage does not run."""


#: what a killed worker (the kernel's OOM killer, Ray's memory monitor, a lost node) is told
KILLED_HINT = (
    "killed{where}, likely out of memory: run fewer at once per node (a larger `{key}.cpu` or "
    "`{key}.gpu` per {per}) or lower {batch}"
)


def killed_hint(node: str | None = None, retrain: bool = False) -> str:
    """`killed on node N, likely out of memory: ...` (no node when it is None or unknown)."""
    where = f" on node {node}" if node and node != "?" else ""
    if retrain:
        return KILLED_HINT.format(where=where, key="evaluate.retrain", per="task",
                                  batch="the retraining's batch size")  # fmt: skip
    return KILLED_HINT.format(where=where, key="resources", per="trial",
                              batch="`search.batch_size`")  # fmt: skip


#: a worker's death as Ray reports it (a SIGKILL or the memory monitor: no Python exception);
#: not a lost node ("its node has died"), which Tune retries elsewhere
_KILLED_RE = re.compile(
    r"OutOfMemoryError|WorkerCrashedError|worker process has died|low on memory|OOM killer"
)


def worker_killed(text: str | None) -> bool:
    """True when a Tune error trace or a Ray exception says the worker process was killed."""
    return bool(_KILLED_RE.search(text or ""))


def check_resources(spec: JobSpec, log=print, retrain: bool = False) -> None:
    """A trial's `resources` (and with `retrain`, `evaluate.retrain`'s cpu/gpu) that no node of the
    cluster offers: on a fixed cluster (the local Ray this process started, no RAY_ADDRESS) a
    SpecError; on a named cluster, which may autoscale, one line saying what stays pending and why."""
    check_fit(spec.name, "resources", spec.resources.cpu, spec.resources.gpu, "per trial", log)
    if retrain and spec.evaluate.retrain is not None:
        r = spec.evaluate.retrain
        check_fit(spec.name, "evaluate.retrain", r.cpu, r.gpu, "per retraining task", log)


def check_fit(name: str, key: str, cpu: float, gpu: float, per: str, log=print) -> None:
    """SpecError (fixed cluster) or one line (RAY_ADDRESS: it may autoscale) when no alive node of
    the Ray cluster offers `cpu` CPUs and `gpu` GPUs at once; Ray would wait for one forever."""
    import ray

    need = {"CPU": cpu, "GPU": gpu}
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if any(all(n.get(k, 0.0) >= v for k, v in need.items() if v > 0) for n in nodes):
        return
    best = {k: max((n.get(k, 0.0) for n in nodes), default=0.0) for k in need}
    what = (f"{key} {{cpu: {cpu:g}, gpu: {gpu:g}}} {per}, but "
            f"no node of the Ray cluster offers that (the largest: {best['CPU']:g} CPUs, "
            f"{best['GPU']:g} GPUs)")  # fmt: skip
    if os.environ.get("RAY_ADDRESS"):
        log(f"sweep {name}: {what}: they stay pending until the autoscaler adds such a node")
        return
    hint = (
        "lower `evaluate.retrain`'s cpu/gpu (or set it to null, or pass --no-evaluate)"
        if key == "evaluate.retrain"
        else "lower `resources`"
    )
    raise SpecError(f"{what}; {hint}, or run on a cluster that has them (RAY_ADDRESS)")


def _tune(spec: JobSpec, todo, log, killed: dict | None = None) -> bool:
    """Run `todo` on Tune; True when Ctrl-C stopped it (Tune's SIGINT handler ends its loop with
    trials unfinished), False when every trial ended (done or errored)."""
    from ray import tune

    init_ray()
    # Each trial carries its fully resolved search, so the job it gets needs no grid: with one, every
    # trial would re-validate the whole grid on start (O(trials^2) work over a big sweep).
    job = {**resolved_job_dict(spec), "search": spec.search, "grid": {}}
    entries = {
        rid: {"run_id": rid, "search": to_dict(cfg), "point": point} for cfg, rid, point in todo
    }
    storage = spec.store if "://" in spec.store else os.path.abspath(spec.store)
    # What every trial shares goes to Ray's object store once: Tune keeps each trial's config on
    # the driver (twice, and once more in its last result) and in its experiment state, so only
    # the trial's own entry belongs there.
    shared = {
        "job": job,
        "cwd": os.getcwd(),
        "fault_env": {k: os.environ[k] for k in FAULT_ENVS if os.environ.get(k)},
        # per-epoch lines from the workers: on a cluster (RAY_ADDRESS) only; a local sweep
        # shows its progress as one line (progress_reporter)
        "epoch_lines": bool(os.environ.get("RAY_ADDRESS")),
    }
    trainable = tune.with_resources(
        tune.with_parameters(_trainable, shared=shared),
        {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu},
    )
    # The classic reporter: the default (AIR) one ignores column choices and prints config dicts.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Tune's own per-trial records (progress.csv, result.json, params.json/.pkl, a TensorBoard
    # events file: 5 files, ~47 KB a trial) come from logger callbacks it adds unless this is 1;
    # nothing here reads them (the store holds every trial's status and trajectory) and resuming
    # does not use them. Read by Tuner.fit, so setting it here covers this driver; an explicit
    # TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=0 brings them back (see docs/scale.md).
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    reporter = progress_reporter(spec, epochs={rid: cfg.total_epochs for cfg, rid, _ in todo})
    tuner = tune.Tuner(
        trainable,
        # The grid runs over the run_ids; each trial's entry is looked up once its run_id is set.
        # A grid over the entries themselves costs O(trials^2): Tune deep-copies the unresolved
        # space, every entry included, for each trial it generates (0.4 s a trial at 2,000).
        param_space={
            "run_id": tune.grid_search(list(entries)),
            "trial": tune.sample_from(lambda config: entries[config["run_id"]]),
        },
        # reuse_actors: a finished trial's worker process runs the next one (no new process and
        # torch import per trial: about 5 s of CPU each); every trial sets its own state up.
        tune_config=tune.TuneConfig(
            trial_dirname_creator=_trial_run_id, trial_name_creator=_trial_run_id, reuse_actors=True
        ),
        run_config=tune.RunConfig(
            name=f"tune-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=f"{storage.rstrip('/')}/{spec.name}/tune",
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            callbacks=[sweep_metrics_callback(spec.name), retry_log_callback(spec, log, killed)],
            progress_reporter=reporter,
            verbose=1,
        ),
    )
    t0 = time.perf_counter()
    with _quiet_tune_logs():
        grid = tuner.fit()
    if reporter.unfinished:
        return True
    errors = sum(1 for r in grid if r.error is not None)
    log(
        f"sweep {spec.name}: Tune finished {len(todo)} trials in {time.perf_counter() - t0:.1f}s ({errors} errored)"
    )
    return False


class _TuneLogFilter(logging.Filter):
    """Drops Tune's lines that the sweep says better itself: a failed trial's traceback (the retry
    log says it in one line; the trace stays in the trial's error.txt under {store}/{job}/tune/),
    after Ctrl-C, `Tuner.restore(...)` advice (rerunning the same command resumes), and the
    result grid's `Failed to fetch metrics` for every trial: Tune's per-trial result files are
    off (TUNE_DISABLE_AUTO_CALLBACK_LOGGERS, in _tune); the store holds the trajectories."""

    DROPPED = ("Trial task failed for trial", "Trials did not complete",
               "Experiment has been interrupted", "Training has been interrupted",
               "Failed to fetch metrics")  # fmt: skip

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.DROPPED)


@contextlib.contextmanager
def _quiet_tune_logs():
    names = ("ray.tune.tune", "ray.tune.execution.tune_controller",
             "ray.tune.analysis.experiment_analysis")  # fmt: skip
    flt = _TuneLogFilter()
    for name in names:
        logging.getLogger(name).addFilter(flt)
    try:
        yield
    finally:
        for name in names:
            logging.getLogger(name).removeFilter(flt)


def _trial_run_id(trial) -> str:
    """Tune names and folders trials by our run_id (not by its own trial id)."""
    return trial.config["run_id"]


def short_keys(keys) -> dict[str, str]:
    """Dotted grid keys -> column names: the last part (`weights.lr` -> `lr`) unless two clash."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: s if last.count(s) == 1 else k for k, s in zip(keys, last)}


def progress_reporter(spec: JobSpec, stream=None, epochs: dict[str, int] | None = None):
    """Tune's progress as one line for the whole sweep: trials done/running/pending, epochs done
    of all, the best valid_acc so far. On a terminal it is rewritten in place (carriage return)
    when it changes; otherwise a plain line at most every 30 s (and one at the end), so a log stays short.
    `epochs`: run_id -> the trial's epochs (see progress_line)."""
    from ray import tune

    class SweepProgress(tune.ProgressReporter):
        def __init__(self, stream=None):
            self.stream = stream
            self.last = 0.0
            self.width = 0
            self.shown = ""  # the line on the terminal now
            self.unfinished: list[str] = []  # at the end: trials neither done nor errored

        def _out(self):
            return self.stream or sys.stdout

        def should_report(self, trials, done: bool = False) -> bool:
            if done or self._out().isatty():
                return True
            return time.monotonic() - self.last >= PLAIN_PROGRESS_SECONDS

        def report(self, trials, done: bool, *sys_info: str) -> None:
            self.last = time.monotonic()
            if done:  # Tune's loop ends early only on Ctrl-C (SIGINT): trials are left over
                self.unfinished = [
                    str(t) for t in trials if t.status not in ("TERMINATED", "ERROR")
                ]
            out = self._out()
            line = progress_line(spec.name, trials, epochs)
            if out.isatty():
                if line == self.shown and not done:  # Tune asks several times a second
                    return
                self.shown = line
                pad = " " * max(0, self.width - len(line))
                self.width = len(line)
                out.write(f"\r{line}{pad}" + ("\n" if done else ""))
            else:
                out.write(line + "\n")
            out.flush()

    return SweepProgress(stream)


#: seconds between two progress lines when stdout is not a terminal (a log file, CI)
PLAIN_PROGRESS_SECONDS = 30


def progress_line(name: str, trials, trial_epochs: dict[str, int] | None = None) -> str:
    """`sweep NAME: 2/6 trials done, 2 running, 2 pending; epochs 57/126; best valid_acc 93.1%`
    from Tune's trials (their status, last reported epoch and valid_acc, total epochs). A trial's
    total epochs: `trial_epochs[run_id]`, else its config's search (a trial not started yet has only
    its run_id resolved in its config: its entry is looked up when it starts)."""
    states: dict[str, int] = {}
    epochs = total = 0
    best = None
    for t in trials:
        states[t.status] = states.get(t.status, 0) + 1
        n = (trial_epochs or {}).get(t.config.get("run_id"))
        if n is None:
            entry = t.config.get("trial")
            cfg = (entry.get("search") if isinstance(entry, dict) else None) or {}
            n = int(cfg.get("warmup_epochs") or 0) + int(cfg.get("epochs") or 0)
        total += n
        last = t.last_result or {}
        epochs += n if t.status == "TERMINATED" else int(last.get("epoch") or 0)
        acc = last.get("valid_acc")
        if acc is not None and (best is None or acc > best):
            best = acc
    done = states.get("TERMINATED", 0)
    parts = [f"{done}/{len(trials)} trials done"]
    parts += [f"{states[s]} {s.lower()}" for s in ("RUNNING", "PENDING", "ERROR") if states.get(s)]
    tail = f"; best valid_acc {best:.1f}%" if best is not None else ""
    return f"sweep {name}: {', '.join(parts)}; epochs {epochs}/{total}{tail}"


def error_line(text: str | None) -> str:
    """The telling line of a Tune error trace: the last `SomeError: ...` line, else the first."""
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith("Failure #")]
    named = [ln for ln in lines if re.match(r"^[\w.]*(Error|Exception|Failure|Died)\w*:", ln)]
    return ((named or lines or ["unknown error"])[-1])[:300]


def _error_text(trial) -> str | None:
    """The trial's error trace: the driver's local copy (the store's is synced later)."""
    try:
        with open(trial.error_file) as f:
            return f.read()
    except (OSError, TypeError):
        return trial.get_error()


def retry_log_callback(spec: JobSpec, log, killed: dict | None = None):
    """A Tune callback on the driver that says which trial failed, where, why, and what happens;
    a trial whose worker was killed (OOM) is named so, and noted in `killed` (run_id -> node)."""
    from ray import tune

    class RetryLog(tune.Callback):
        def __init__(self, log, killed):
            self.log = log
            self.killed = killed

        def __getstate__(self):  # Tune pickles its callbacks; `log` may not pickle (print)
            return {}

        def _say(self, trial, what: str) -> None:
            node = (trial.last_result or {}).get("node_ip", "?")
            text = _error_text(trial)
            why = error_line(text)
            if worker_killed(text):  # the node is in the line already
                why = f"its process was {killed_hint()}"
                if getattr(self, "killed", None) is not None:
                    self.killed[str(trial)] = node
            getattr(self, "log", print)(f"sweep {spec.name}: trial {trial} failed on node {node} "
                f"(failure {trial.num_failures} of max_failures={spec.max_failures}): "
                f"{why}; {what}")  # fmt: skip

        def on_trial_recover(self, iteration, trials, trial, **info):
            self._say(trial, "Tune retries it, resuming from its checkpoint on the store")

        def on_trial_error(self, iteration, trials, trial, **info):
            self._say(trial, "no retries left (rerun the same command to resume it)")

    return RetryLog(log, killed)


def ray_map(
    fn, args: list[tuple], cpu: float = 1.0, gpu: float = 0.0, name: str = "",
    key: str = "evaluate.retrain",
) -> list:  # fmt: skip
    """Run fn(*a) for each a as Ray tasks (the retraining stage; darts_pt's projections, one per
    trial with the job's `resources`, key "resources"), results in order.

    A task whose node is lost is rerun by Ray (up to 3 times); the retraining tasks checkpoint
    every epoch on the store, so a rerun resumes where the lost one stopped. The test-only
    FAULT_ENVS set here reach the tasks, as a sweep's reach its trials."""
    import ray

    init_ray()
    check_fit(name or "retrain", key, cpu, gpu,
              "per retraining task" if key == "evaluate.retrain" else "per task")  # fmt: skip
    fault = {k: os.environ[k] for k in FAULT_ENVS if os.environ.get(k)}
    opts = {"runtime_env": {"env_vars": fault}} if fault else {}
    remote = ray.remote(num_cpus=cpu, num_gpus=gpu, max_retries=3, **opts)(fn)
    try:
        return ray.get([remote.remote(*a) for a in args])
    except (ray.exceptions.OutOfMemoryError, ray.exceptions.WorkerCrashedError) as e:
        ip = re.search(r"\b(?:IP|ip)[:=]\s*([0-9a-fA-F.:]+[0-9a-fA-F])", str(e))
        hint = killed_hint(ip.group(1) if ip else "?", retrain=True)
        raise WorkerKilled(f"{name or 'retrain'}: a retraining task was {hint}; what it "
                           "finished is cached, rerun the same command to go on") from None  # fmt: skip


def ray_available() -> bool:
    """True when a Ray cluster is running here or named by RAY_ADDRESS."""
    import ray

    return ray.is_initialized() or bool(os.environ.get("RAY_ADDRESS"))


__all__ = ["run_sweep", "ray_map", "check_job_identity", "init_ray", "ray_available", "SpecError"]


def ray_metric(name: str, **default_tags: str):
    """A `ray.util.metrics` Counter or Gauge of search.metrics.METRICS (Prometheus: `ray_<name>`)."""
    from ray.util.metrics import Counter, Gauge

    kind, tags, doc = METRICS[name]
    return (Counter if kind == "counter" else Gauge)(name, doc, tags).set_default_tags(default_tags)


def sweep_metrics_callback(job: str):
    """A Tune callback on the driver: `nas_sweep_trials{state}` = how many trials are in each state."""
    from ray import tune

    class SweepMetrics(tune.Callback):
        STATES = ("PENDING", "RUNNING", "PAUSED", "TERMINATED", "ERROR")

        def __init__(self):
            self.gauge, self.last = ray_metric("nas_sweep_trials", nas_job=job), 0.0

        def on_step_end(self, iteration, trials, **info):
            # the loop steps often; Prometheus reads every 10 s
            if time.monotonic() - self.last >= 1.0:
                self.on_experiment_end(trials)

        def on_experiment_end(self, trials, **info):
            self.last = time.monotonic()
            counts = dict.fromkeys(self.STATES, 0)
            for t in trials:
                counts[t.status] = counts.get(t.status, 0) + 1
            for state, n in counts.items():
                self.gauge.set(n, tags={"state": state})

    return SweepMetrics()
