"""``python -m services.felix``: the same as the ``calico-felix`` console script."""

import gc
import sys

# Start-up builds millions of long-lived objects (the snapshot, the graph, the ruleset); the cyclic
# collector would walk them again and again (a third of the start-up CPU). It runs again, once,
# after the first dataplane apply (services.felix.memory.settle_after_startup).
gc.disable()

from services.felix.cli import main  # noqa: E402 - after gc.disable() on purpose

if __name__ == "__main__":
    sys.exit(main())
