"""Entry point for `ray submit`: run the ray-nas command line on the cluster's head node.

    ray submit --tmux cluster.yaml jobs/run.py -- sweep jobs/paper/exp5_exchange.yaml \
        --set store=/mnt/shared/runs --set tracking_uri=http://127.0.0.1:5000

`ray submit` copies this one file to ~/run.py on the head and runs it there from the home
directory; the package itself was synced to ~/ray_nas and installed by cluster.yaml. Job paths
such as `jobs/paper/X.yaml` are relative to the repository, so this moves there first. Under the
Jobs API (`ray job submit --working-dir . -- python jobs/run.py sweep ...`) or locally, the
current directory already holds `jobs/` and nothing changes.
"""

import os
import sys
from pathlib import Path

REPO = Path(os.environ.get("RAY_NAS_HOME", "~/ray_nas")).expanduser()

if __name__ == "__main__":
    if not Path("jobs").is_dir() and (REPO / "jobs").is_dir():
        os.chdir(REPO)
    if Path("ray_nas").is_dir():  # a checkout: import its code, installed or not
        sys.path.insert(0, os.getcwd())
    from ray_nas.cli import main

    args = sys.argv[1:]
    sys.exit(main(args[1:] if args[:1] == ["--"] else args))
