"""``python -m services.felix``: the same as the ``calico-felix`` console script."""

import gc
import sys

# Start-up builds millions of long-lived objects (the snapshot, the graph, the ruleset); the cyclic
# collector would walk them again and again (a third of the start-up CPU). It runs again, once,
# after the first dataplane apply (services.felix.memory.settle_after_startup).
gc.disable()

# Generated dataclass/namedtuple methods and regex programs come from a cache instead of ~480 compiles
# (~30 ms of start-up, measured) and ~50 regex compiles (~3 ms); written back after the first apply when
# it changed (services.felix.memory). See libcalico/runtime/codecache.py.
from libcalico.runtime import codecache  # noqa: E402 - before the modules that define classes

codecache.install("felix")

from services.felix.cli import main  # noqa: E402 - after gc.disable() on purpose

if __name__ == "__main__":
    sys.exit(main())
