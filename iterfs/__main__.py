"""python -m iterfs MOUNTPOINT: the daemon, as mount.py runs it."""

import sys

from .daemon import main

sys.exit(main())
