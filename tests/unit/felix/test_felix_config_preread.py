"""The start-up pre-read of FelixConfiguration validates each resource: the fast path first, the model otherwise.

Values are written raw into a real sqlite datastore (a datastore write through the client
would validate them first), as another writer or an older version could have left them.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from libcalico.datastore.keys import ResourceKey
from libcalico.datastore.sqlite import SqliteBackend
from libcalico.errors import ValidationError
from libcalico.syncer.fastpath import accepts
from services.felix import cli
from services.felix.config import SPEC, read_felix_configuration

API = "projectcalico.org/v3"


def seed(db: str, values: dict[str, Any]) -> None:
    async def write() -> None:
        backend = SqliteBackend(db)
        try:
            for name, value in values.items():
                await backend.create(ResourceKey("felixconfigurations", name).path, value)
        finally:
            await backend.close()

    asyncio.run(write())


def read(db: str, hostname: str = "node1") -> dict[str, dict[str, Any]]:
    async def go() -> dict[str, dict[str, Any]]:
        backend = SqliteBackend(db)
        try:
            return await read_felix_configuration(backend, hostname)
        finally:
            await backend.close()

    return asyncio.run(go())


def config(name: str, spec: Any, **meta: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "FelixConfiguration", "metadata": {"name": name, **meta}, "spec": spec}


def test_valid_resources_are_read_without_the_models(tmp_path: Path) -> None:
    """The usual form: the fast path vouches for it, so neither pydantic nor the models are imported."""
    db = str(tmp_path / "calico.db")
    seed(db, {"default": config("default", {"reportingInterval": "0s", "logSeverityScreen": "Info",
                                            "failsafeInboundHostPorts": [{"protocol": "TCP", "port": 22}]}),
              "node.node1": config("node.node1", {"healthPort": 9200})})
    code = f"""
        import asyncio, json, sys
        from libcalico.datastore.sqlite import SqliteBackend
        from services.felix.config import read_felix_configuration

        async def go():
            backend = SqliteBackend({db!r})
            try:
                return await read_felix_configuration(backend, "node1")
            finally:
                await backend.close()

        specs = asyncio.run(go())
        print(json.dumps({{"specs": specs, "loaded": [m for m in ("pydantic", "libcalico.resources")
                                                      if m in sys.modules]}}))
    """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["loaded"] == []
    assert got["specs"] == {"default": {"reportingInterval": "0s", "logSeverityScreen": "Info",
                                        "failsafeInboundHostPorts": [{"protocol": "TCP", "port": 22}]},
                            "node.node1": {"healthPort": 9200}}


def test_a_valid_form_the_fast_path_leaves_to_the_model_is_read(tmp_path: Path) -> None:
    db = str(tmp_path / "calico.db")
    # Metadata the fast path does not restate (generation), and a duration only the model judges ("-0s").
    value = config("default", {"reportingTTL": "-0s", "healthPort": 9100}, generation=3)
    assert not accepts("FelixConfiguration", value)
    seed(db, {"default": value})
    assert read(db) == {"default": {"reportingTTL": "-0s", "healthPort": 9100}}


@pytest.mark.parametrize(("value", "field"), [
    (config("default", {"healthPort": "9100"}), "spec.healthPort"),
    (config("default", {"reportingInterval": "soon"}), "spec.reportingInterval"),
    (config("default", {"bogusField": 1}), "spec.bogusField"),
    (config("default", {"routeTableRange": {"min": 1, "max": 2}, "routeTableRanges": []}), "spec.routeTableRange"),
    (config("default", None), "spec"),
    (config("other", {}), "metadata.name"),
    ({"apiVersion": API, "kind": "IPPool", "metadata": {"name": "default"}, "spec": {}}, "metadata.name"),
])
def test_an_invalid_resource_is_an_error_naming_resource_and_field(tmp_path: Path, value: dict[str, Any],
                                                                   field: str) -> None:
    db = str(tmp_path / "calico.db")
    seed(db, {"default": value})
    with pytest.raises(ValidationError) as caught:
        read(db)
    assert caught.value.source == "FelixConfiguration(default)"
    assert caught.value.field == field
    assert str(caught.value).startswith(f"FelixConfiguration(default): {field}: ")


def test_start_up_goes_on_without_the_preread_and_says_why(tmp_path: Path) -> None:
    """As the graph treats an invalid resource as deleted, start-up leaves the pre-read out and notes why."""
    db = str(tmp_path / "calico.db")
    seed(db, {"default": config("default", {"healthPort": 70000}),
              "node.node1": config("node.node1", {"reportingInterval": "5s"})})
    local = SPEC.load([], {"FELIX_FELIXHOSTNAME": "node1"})
    ctx = cli.start_context(local, [], {"DATASTORE_TYPE": "sqlite", "CALICO_DB": db, "FELIX_FELIXHOSTNAME": "node1"})
    assert cli.preread(ctx) == []
    assert len(ctx.notes) == 1
    assert "FelixConfiguration(default): spec.healthPort:" in ctx.notes[0]
