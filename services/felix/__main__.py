"""``python -m services.felix``: the same as the ``calico-felix`` console script."""

import sys

from services.felix.cli import main

if __name__ == "__main__":
    sys.exit(main())
