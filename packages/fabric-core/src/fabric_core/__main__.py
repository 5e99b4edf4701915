"""``python -m fabric_core``: the same as the ``fabric`` command."""

import sys

from fabric_core.cli import main

if __name__ == "__main__":
    sys.exit(main())
