"""Entry point for `ray submit` and the Jobs API: run the ray-nas command line on a cluster's node.

    ray submit --tmux cluster.yaml jobs/run.py -- sweep jobs/paper/exp5_exchange.yaml \
        --set store=/mnt/shared/runs --set tracking_uri=http://127.0.0.1:5000

`ray submit` copies this one file to ~/run.py on the head and runs it there from the home
directory; the package itself was synced to ~/ray_nas and installed by cluster.yaml. Job paths
such as `jobs/paper/X.yaml` are relative to the repository, so this moves there first. Under the
Jobs API (`ray job submit --working-dir . -- python jobs/run.py sweep ...`) or locally, the
current directory already holds `jobs/` and nothing changes.

Before anything imports Ray, this sets what the cluster config promises, whatever shell started
it (a tmux server started before `ray up` does not read ~/.bashrc):
- RAY_AUTH_MODE: the value cluster.yaml / cluster-local.yaml wrote to ~/.bashrc (its line ends
  with `# RAY_NAS_AUTH`), over whatever the environment holds;
- RAY_ADDRESS: kept when a Ray GCS answers there; else (unset, a dead port, another service
  on it) the cluster running on this node, from Ray's own `ray_current_cluster` file. A sweep
  on a node the configs set up (or with a RAY_ADDRESS) that reaches no cluster stops within
  seconds, with one line, exit 2.
"""

import os
import re
import sys
from pathlib import Path

REPO = Path(os.environ.get("RAY_NAS_HOME", "~/ray_nas")).expanduser()
#: the marker cluster*.yaml's setup_commands put on their RAY_AUTH_MODE line in ~/.bashrc
AUTH_MARKER = "# RAY_NAS_AUTH"
#: the commands that start or join a Ray cluster
RAY_COMMANDS = ("sweep", "evaluate")


def promised_auth_mode(home: Path) -> str | None:
    """RAY_AUTH_MODE as the cluster config wrote it into `home`/.bashrc, or None (not a node)."""
    try:
        text = (home / ".bashrc").read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if AUTH_MARKER in line:
            m = re.search(r"RAY_AUTH_MODE=([A-Za-z_]+)", line)
            if m:
                return m.group(1)
    return None


def cluster_env(argv: list[str], environ: dict, home: Path) -> tuple[dict, list[str], str | None]:
    """(variables to set, notes to print, error) for running `argv` here; no Ray import."""
    from ray_nas.offline.retrain import answers, local_cluster_address

    changes, notes = {}, []
    mode = promised_auth_mode(home)
    if mode and environ.get("RAY_AUTH_MODE") != mode:
        changes["RAY_AUTH_MODE"] = mode
        if environ.get("RAY_AUTH_MODE"):
            notes.append(f"RAY_AUTH_MODE={environ['RAY_AUTH_MODE']} replaced by {mode}, as "
                         f"{home / '.bashrc'} sets it for this cluster")  # fmt: skip
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in RAY_COMMANDS or "--dry-run" in argv:
        return changes, notes, None
    given = environ.get("RAY_ADDRESS", "")
    if given == "auto" or (given and answers(given)):
        return changes, notes, None
    local = local_cluster_address()
    if local:
        changes["RAY_ADDRESS"] = local
        if given:
            notes.append(f"RAY_ADDRESS={given}: no Ray cluster answers there; using the Ray "
                         f"cluster running on this node, {local}")  # fmt: skip
    elif given:
        return changes, notes, (f"RAY_ADDRESS={given}: no Ray cluster answers there, and none "
                                "runs on this node (start one with `ray up CLUSTER.yaml`, or "
                                "unset RAY_ADDRESS)")  # fmt: skip
    elif mode and command == "sweep":
        return changes, notes, ("no Ray cluster runs on this node (the cluster config set it up): "
                                "start it with `ray up CLUSTER.yaml`, or set RAY_ADDRESS")  # fmt: skip
    return changes, notes, None


def main(argv: list[str]) -> int:
    args = argv[1:] if argv[:1] == ["--"] else argv
    if not Path("jobs").is_dir() and (REPO / "jobs").is_dir():
        os.chdir(REPO)
    if Path("ray_nas").is_dir():  # a checkout: import its code, installed or not
        sys.path.insert(0, os.getcwd())
    changes, notes, error = cluster_env(args, dict(os.environ), Path.home())
    if error:
        print(f"jobs/run.py: error: {error}", file=sys.stderr)
        return 2
    os.environ.update(changes)
    for note in notes:
        print(f"jobs/run.py: {note}", flush=True)
    from ray_nas.cli import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
