"""``python -m omestream``: the same command line as the ``omestream`` script."""

import sys

from omestream.cli import main

if __name__ == "__main__":
    sys.exit(main())
