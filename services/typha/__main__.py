"""``python -m services.typha``: the same as the ``calico-typha`` console script."""

import sys

from services.typha.cli import main

if __name__ == "__main__":
    sys.exit(main())
