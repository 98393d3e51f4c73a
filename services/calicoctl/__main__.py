"""Entry point of the ``calicoctl`` console script."""

from __future__ import annotations

import sys

from services.calicoctl.cli import run


def main() -> None:
    """Run calicoctl with the process's arguments and exit with its status."""
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
