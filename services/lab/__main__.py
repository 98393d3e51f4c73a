import sys

from services.lab.cli import main

if __name__ == "__main__":
    sys.exit(main())
