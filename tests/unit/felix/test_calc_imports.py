"""The calculation graph stays light to import and to cold-start: the resource models only when used.

Each check runs in a fresh interpreter (imports are process-wide).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap


def fresh(code: str) -> dict[str, object]:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


HEAVY = ["pydantic", "libcalico.resources", "structlog"]


def test_importing_the_graph_imports_no_models_and_no_logging() -> None:
    got = fresh(f"""
        import json, sys
        import services.felix.calc
        print(json.dumps({{"loaded": [m for m in {HEAVY!r} if m in sys.modules]}}))
    """)
    assert got == {"loaded": []}


def test_a_cold_start_of_vouched_for_values_needs_no_models() -> None:
    """Workloads (read raw), policies and profiles (read raw once vouched for): no model is imported."""
    got = fresh(f"""
        import json, sys
        from libcalico.syncer import SyncStatus
        from services.felix.calc import CalcGraph
        from tests.unit.felix.test_calc_builders import ns_profile, policy, wep

        graph = CalcGraph("node1", accepts=lambda kind, value: True)
        graph.on_updates([ns_profile("default"), wep("a", labels={{"app": "x"}}),
                          wep("b", node="node2", labels={{"app": "y"}}, ips=("10.0.0.2/32",)),
                          policy("p", "default", "app == 'x'",
                                 ingress=[{{"action": "Allow", "source": {{"selector": "app == 'y'"}}}}])])
        graph.on_status(SyncStatus.IN_SYNC)
        kinds = sorted({{type(m).__name__ for m in graph.flush()}})
        print(json.dumps({{"kinds": kinds, "loaded": [m for m in {HEAVY!r} if m in sys.modules]}}))
    """)
    assert got["loaded"] == []
    assert got["kinds"] == ["ActivePolicyUpdate", "ActiveProfileUpdate", "ConfigUpdate", "IPSetUpdate", "InSync",
                            "WorkloadEndpointUpdate"]


def test_a_value_the_fast_path_does_not_vouch_for_goes_through_the_models() -> None:
    got = fresh("""
        import json, sys
        from libcalico.syncer import SyncStatus
        from services.felix.calc import CalcGraph
        from tests.unit.felix.test_calc_builders import policy, wep

        graph = CalcGraph("node1", accepts=lambda kind, value: False)
        graph.on_updates([wep("a", profiles=()), policy("p", "default", "all()", ingress=[{"action": "Allow"}])])
        graph.on_status(SyncStatus.IN_SYNC)
        names = [m.id.name for m in graph.flush() if type(m).__name__ == "ActivePolicyUpdate"]
        print(json.dumps({"policies": names, "models": "libcalico.resources" in sys.modules}))
    """)
    assert got == {"policies": ["default/p"], "models": True}
