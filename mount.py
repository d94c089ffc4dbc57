#!/usr/bin/env python3
"""Mount iterfs in the foreground: mount.py MOUNTPOINT [--debug] [-o OPTION ...]"""

import sys

from iterfs.daemon import main

if __name__ == "__main__":
    sys.exit(main())
