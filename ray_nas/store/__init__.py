"""The store: everything a job keeps on disk or S3, and the only code that touches Parquet.

fs.py          atomic local/S3 files (write, read, move, delete)
trials.py      Parquet schemas, the trial writer, status files, the trial readers
checkpoint.py  a trial's checkpoint file
compact.py     read_job (a whole job), and the compacted copy of its trajectories (`{job}/compact/`)
"""

from ray_nas.store.compact import *  # noqa: F403
from ray_nas.store.fs import *  # noqa: F403
from ray_nas.store.fs import _fs_path  # noqa: F401
from ray_nas.store.trials import *  # noqa: F403
from ray_nas.store.trials import _read_trial, _trial_data  # noqa: F401
