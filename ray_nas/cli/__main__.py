"""`python -m ray_nas.cli` runs the `ray-nas` command."""

import sys

from ray_nas.cli import main

sys.exit(main())
