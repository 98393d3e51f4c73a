"""The command line: bad settings are a clear error and exit 2; FelixConfiguration is read before start-up."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from libcalico.datastore.client import Client
from libcalico.datastore.sqlite import SqliteBackend
from libcalico.resources import parse_resource
from services.felix import cli
from services.felix.config import SPEC


def run_main(monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], env: dict[str, str]
             ) -> tuple[int, dict[str, object]]:
    for key in list(os.environ):
        if key.startswith("FELIX_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code = cli.main(["-c", "/dev/null"])
    err = capfd.readouterr().err.strip().splitlines()
    return code, json.loads(err[-1])


@pytest.mark.parametrize(("env", "param", "source"), [
    ({"FELIX_HEALTHPORT": "99999"}, "HealthPort", "environment variable FELIX_HEALTHPORT"),
    ({"FELIX_VXLANVNI": "0"}, "VXLANVNI", "environment variable FELIX_VXLANVNI"),
    ({"FELIX_LOGPREFIX": 'bad"prefix'}, "LogPrefix", "environment variable FELIX_LOGPREFIX"),
    ({"FELIX_TYPHAADDR": "127.0.0.1:5473", "FELIX_TYPHACAFILE": "/ca.pem"}, None, "Typha TLS settings"),
])
def test_bad_settings_exit_2_naming_parameter_and_source(monkeypatch: pytest.MonkeyPatch,
                                                         capfd: pytest.CaptureFixture[str], env: dict[str, str],
                                                         param: str | None, source: str) -> None:
    code, line = run_main(monkeypatch, capfd, env)
    assert code == 2
    assert line["event"] == "settings_invalid" and line["source"] == source
    assert line["param"] == param


def test_preread_takes_global_and_this_nodes_configuration(tmp_path: Path) -> None:
    db = str(tmp_path / "calico.db")

    async def seed() -> None:
        backend = SqliteBackend(db)
        client = Client(backend)
        for name, spec in (("default", {"healthPort": 9100, "reportingInterval": "20s", "bpfEnabled": False}),
                           ("node.node1", {"healthPort": 9200}), ("node.other", {"healthPort": 9300})):
            await client.apply(parse_resource({"apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration",
                                               "metadata": {"name": name}, "spec": spec}))
        await backend.close()

    asyncio.run(seed())
    local = SPEC.load([], {"FELIX_FELIXHOSTNAME": "node1"})
    ctx = cli.start_context(local, [], {"DATASTORE_TYPE": "sqlite", "CALICO_DB": db, "FELIX_FELIXHOSTNAME": "node1"})
    assert ctx.hostname == "node1"
    layers = cli.preread(ctx)
    assert layers == [("FelixConfiguration default", {"healthPort": 9100, "reportingInterval": "20s"}),
                      ("FelixConfiguration node.node1", {"healthPort": 9200})]
    assert SPEC.load([], {}, layers).settings.health_port == 9200


def test_preread_of_an_unreachable_datastore_is_a_note_not_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    local = SPEC.load([], {})
    ctx = cli.start_context(local, [], {"DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": "http://127.0.0.1:1",
                                        "NODENAME": "n1"})
    assert ctx.hostname == "n1"
    monkeypatch.setattr(cli, "PREREAD_TIMEOUT", 2.0)
    assert cli.preread(ctx) == []
    assert ctx.notes and "FelixConfiguration not read at start-up" in ctx.notes[0]


def test_handed_over_configuration_after_a_restart() -> None:
    ctx = cli.start_context(SPEC.load([], {}), [], {})
    layers = cli.handed_over(json.dumps({"reportingInterval": "7s", "typhaAddr": "x", "vxlanVNI": 9}), ctx)
    assert layers == [("FelixConfiguration (as of the restart)", {"reportingInterval": "7s", "vxlanVNI": 9})]
    assert cli.handed_over("{not json", ctx) == [] and ctx.notes
