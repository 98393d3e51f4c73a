"""What a CNI plugin process loads: only what an ADD needs (its start-up is part of every pod's start).

Each case runs a fresh interpreter, since the point is what one import drags in.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _run(code: str) -> object:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_the_plugins_load_no_unused_heavy_package() -> None:
    loaded = _run(
        "import json, sys; sys.argv[0] = '/opt/cni/bin/calico'\n"
        "import services.cni.calico, services.cni.ipam\n"
        "print(json.dumps(sorted(sys.modules)))")
    assert isinstance(loaded, list)
    heavy = ("pyroute2", "rich", "aiohttp", "kubernetes_asyncio", "aetcd", "grpc", "prometheus_client", "yaml",
             "jinja2", "libcalico.resources.felixconfig", "libcalico.resources.policy",
             "libcalico.resources.bgp", "libcalico.datastore.etcd", "libcalico.datastore.kubernetes")
    found = sorted(name for name in loaded if name.split(".")[0] in heavy or name in heavy)
    assert found == []
    assert "services.cni.rtnetlink" in loaded and "libcalico.resources.endpoint" in loaded


def test_rich_is_hidden_only_from_the_plugin_executables() -> None:
    loaded = _run(
        "import json, sys; sys.argv[0] = '/usr/bin/some-tool'\n"
        "import services.cni.calico\n"
        "import rich.console\n"
        "print(json.dumps(sorted(sys.modules)))")
    assert isinstance(loaded, list) and "rich" in loaded
    # and in a plugin process rich can still be imported after structlog is loaded
    assert _run(
        "import json, sys; sys.argv[0] = '/opt/cni/bin/calico-ipam'\n"
        "import services.cni.ipam, structlog.dev\n"
        "had = 'rich' in sys.modules\n"
        "import rich\n"
        "print(json.dumps([had, structlog.dev.rich is None]))") == [False, True]


def test_kinds_load_lazily_but_the_registry_stays_complete_and_ordered() -> None:
    eager = _run(
        "import json\n"
        "from libcalico.resources import all_kinds\n"
        "print(json.dumps([c.KIND.kind for c in all_kinds()]))")
    lazy = _run(
        "import json, sys\n"
        "from libcalico.resources import WorkloadEndpoint, IPPool\n"
        "before = 'libcalico.resources.felixconfig' in sys.modules\n"
        "from libcalico.resources.base import kind_class, lookup_kind, all_kinds\n"
        "assert kind_class('WorkloadEndpoint') is WorkloadEndpoint\n"
        "assert 'libcalico.resources.felixconfig' not in sys.modules\n"
        "fc = kind_class('FelixConfiguration').KIND.kind\n"
        "print(json.dumps([before, fc, lookup_kind('gnp').KIND.kind, [c.KIND.kind for c in all_kinds()]]))")
    assert isinstance(eager, list) and len(eager) == 19
    assert lazy == [False, "FelixConfiguration", "GlobalNetworkPolicy", eager]
