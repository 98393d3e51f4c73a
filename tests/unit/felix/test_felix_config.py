"""Felix's settings: Calico's names and defaults, the precedence of sources, and what needs a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from libcalico.runtime import SettingsError, SourceKind
from services.felix.config import (
    DATAPLANE_ATTRS,
    SPEC,
    datastore_env,
    datastore_layers,
    known_fields,
    local_overlay,
    region_string,
    restart_reasons,
)
from services.felix.messages import ConfigUpdate
from services.felix.pipeline import ConfigTracker


def param(name: str) -> Any:
    return next(b for b in SPEC.bound if b.param.name == name)


@pytest.mark.parametrize(("name", "env", "field", "default"), [
    ("HealthPort", "FELIX_HEALTHPORT", "healthPort", 9099),
    ("HealthHost", "FELIX_HEALTHHOST", "healthHost", "localhost"),
    ("PrometheusMetricsPort", "FELIX_PROMETHEUSMETRICSPORT", "prometheusMetricsPort", 9091),
    ("LogSeverityScreen", "FELIX_LOGSEVERITYSCREEN", "logSeverityScreen", "Info"),
    ("FelixHostname", "FELIX_FELIXHOSTNAME", "felixHostname", ""),
    ("TyphaAddr", "FELIX_TYPHAADDR", "typhaAddr", ""),
    ("TyphaK8sServiceName", "FELIX_TYPHAK8SSERVICENAME", "typhaK8sServiceName", ""),
    ("TyphaK8sNamespace", "FELIX_TYPHAK8SNAMESPACE", "typhaK8sNamespace", "kube-system"),
    ("ReportingIntervalSecs", "FELIX_REPORTINGINTERVALSECS", "reportingInterval", 30.0),
    ("ReportingTTLSecs", "FELIX_REPORTINGTTLSECS", "reportingTTL", 90.0),
    ("EndpointReportingEnabled", "FELIX_ENDPOINTREPORTINGENABLED", "endpointReportingEnabled", False),
    ("EndpointReportingDelaySecs", "FELIX_ENDPOINTREPORTINGDELAYSECS", "endpointReportingDelay", 1.0),
    ("EndpointStatusPathPrefix", "FELIX_ENDPOINTSTATUSPATHPREFIX", "endpointStatusPathPrefix", "/var/run/calico"),
    ("FailsafeInboundHostPorts", "FELIX_FAILSAFEINBOUNDHOSTPORTS", "failsafeInboundHostPorts", None),
    ("IpInIpMtu", "FELIX_IPINIPMTU", "ipipMTU", None),
    ("VXLANVNI", "FELIX_VXLANVNI", "vxlanVNI", None),
])
def test_calico_names_environment_variables_fields_and_defaults(name: str, env: str, field: str,
                                                                 default: object) -> None:
    bound = param(name)
    assert (bound.env, bound.field, bound.param.default) == (env, field, default)


def test_connection_parameters_are_local_only() -> None:
    local = {b.param.name for b in SPEC.bound if b.param.local}
    assert {"FelixHostname", "DatastoreType", "TyphaAddr", "TyphaK8sServiceName", "TyphaCAFile",
            "EtcdEndpoints"} <= local
    assert "HealthPort" not in local


def test_precedence_defaults_global_host_file_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "felix.cfg"
    cfg.write_text("[global]\nReportingIntervalSecs = 40\nHealthPort = 9300\n")
    layers = datastore_layers({"reportingInterval": "10s", "healthPort": 9100, "reportingTTL": "50s",
                               "logSeverityScreen": "Debug", "typhaAddr": "10.0.0.9:5473"},
                              {"healthPort": 9200, "reportingTTL": "60s"}, "node1")
    loaded = SPEC.load(["-c", str(cfg)], {"FELIX_HEALTHPORT": "9400"}, layers)
    s = loaded.settings
    assert s.log_severity_screen == "Debug"  # global only
    assert s.reporting_ttl_secs == 60.0  # per-host over global
    assert s.reporting_interval_secs == 40.0  # config file over the datastore
    assert s.health_port == 9400  # environment over everything
    assert s.typha_addr == ""  # local-only: never from the datastore
    assert loaded.source_of("ReportingTTLSecs").where == "FelixConfiguration node.node1 field reportingTTL"
    assert loaded.source_of("ReportingIntervalSecs").kind is SourceKind.CONFIG_FILE
    assert "typhaAddr" not in layers[0][1]  # local parameters are dropped from the datastore layers


def test_bad_values_name_parameter_and_source() -> None:
    with pytest.raises(SettingsError, match=r"environment variable FELIX_HEALTHPORT.*HealthPort"):
        SPEC.load([], {"FELIX_HEALTHPORT": "not-a-port"})
    with pytest.raises(SettingsError, match="FELIX_DEFAULTENDPOINTTOHOSTACTION"):
        SPEC.load([], {"FELIX_DEFAULTENDPOINTTOHOSTACTION": "Maybe"})


def test_local_overlay_holds_only_locally_set_dataplane_parameters() -> None:
    loaded = SPEC.load([], {"FELIX_FAILSAFEINBOUNDHOSTPORTS": "tcp:22,udp:68", "FELIX_HEALTHPORT": "9999",
                            "FELIX_DEFAULTENDPOINTTOHOSTACTION": "ACCEPT"},
                       [("FelixConfiguration default", {"vxlanVNI": 5000})])
    overlay = local_overlay(loaded)
    assert set(overlay) == {"failsafeInboundHostPorts", "defaultEndpointToHostAction"}
    assert overlay["defaultEndpointToHostAction"] == "Accept"
    assert [str(p) for p in overlay["failsafeInboundHostPorts"]] == ["tcp:22", "udp:68"]
    assert loaded.settings.vxlan_vni == 5000  # from the datastore: not part of the overlay


def test_restart_only_for_daemon_parameters() -> None:
    base = SPEC.load([], {}).settings
    assert restart_reasons(base, SPEC.load([], {}, [("ds", {"healthPort": 9100})]).settings) == ["HealthPort"]
    assert restart_reasons(base, SPEC.load([], {}, [("ds", {"vxlanVNI": 5000, "failsafeInboundHostPorts": [
        {"protocol": "TCP", "port": 22}]})]).settings) == []
    assert "vxlan_vni" in DATAPLANE_ATTRS and "health_port" not in DATAPLANE_ATTRS


def test_known_fields_drops_what_felix_settings_do_not_read() -> None:
    spec = {"healthPort": 1, "bpfEnabled": True, "TYPHAADDR": "x", "vxlanVNI": 7, "reportinginterval": "5s"}
    assert known_fields(spec) == {"healthPort": 1, "vxlanVNI": 7, "reportingInterval": "5s"}


def test_region_string_and_datastore_environment() -> None:
    assert region_string("") == "no-region"
    assert region_string("r1") == "openstack-region-r1"
    settings = SPEC.load([], {"FELIX_DATASTORETYPE": "etcdv3", "FELIX_ETCDENDPOINTS": "http://e:2379"}).settings
    env = datastore_env(settings, {"DATASTORE_TYPE": "sqlite", "CALICO_DB": "/x.db", "HOME": "/root"})
    assert env == {"DATASTORE_TYPE": "etcdv3", "CALICO_DB": "/x.db", "ETCD_ENDPOINTS": "http://e:2379"}


class Restarts:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, reasons: list[str], datastore: dict[str, object]) -> None:
        self.calls.append(reasons)


def tracker(environ: dict[str, str]) -> tuple[ConfigTracker, Restarts]:
    loaded = SPEC.load([], environ)
    restarts = Restarts()
    return ConfigTracker(SPEC, [], environ, loaded.settings, local_overlay(loaded), restarts), restarts


def test_config_tracker_merges_overlay_over_datastore_and_asks_for_restarts() -> None:
    track, restarts = tracker({"FELIX_INTERFACEPREFIX": "tap"})
    out = track.apply(ConfigUpdate({"interfacePrefix": "cali", "vxlanVNI": 5000}))
    assert out.config == {"interfacePrefix": "tap", "vxlanVNI": 5000}  # environment wins
    assert restarts.calls == []
    track.apply(ConfigUpdate({"reportingInterval": "5s", "healthPort": 9100}))
    assert restarts.calls == [["HealthPort", "ReportingIntervalSecs"]]
    track.apply(ConfigUpdate({"reportingInterval": "6s"}))
    assert len(restarts.calls) == 1  # asked once


def test_config_tracker_no_restart_when_the_environment_pins_the_value() -> None:
    track, restarts = tracker({"FELIX_HEALTHPORT": "9099"})
    track.apply(ConfigUpdate({"healthPort": 9100}))
    assert restarts.calls == []


def test_config_tracker_ignores_an_invalid_datastore_value() -> None:
    track, restarts = tracker({})
    out = track.apply(ConfigUpdate({"healthPort": "not-a-port"}))
    assert restarts.calls == [] and out.config == {"healthPort": "not-a-port"}
