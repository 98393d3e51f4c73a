"""Typha's settings: Calico's names and defaults, the config file, and whole-or-nothing TLS."""

from __future__ import annotations

from pathlib import Path

import pytest

from libcalico.runtime import SettingsError
from services.typha.cli import SPEC, TyphaSettings


def test_calico_defaults() -> None:
    s = SPEC.load([], {}).settings
    assert isinstance(s, TyphaSettings)
    assert (s.server_port, s.health_port, s.prometheus_metrics_port) == (5473, 9098, 9093)
    assert (s.max_connections_lower_limit, s.max_connections_upper_limit) == (400, 10000)
    assert (s.server_ping_interval_secs, s.server_pong_timeout_secs, s.server_handshake_timeout_secs) == (10, 60, 10)
    assert (s.shutdown_timeout_secs, s.shutdown_connection_drop_interval_max_secs) == (300, 1)
    assert s.connection_rebalancing_mode == "none" and not s.tls.enabled
    assert (s.k8s_namespace, s.k8s_service_name, s.k8s_port_name) == ("kube-system", "calico-typha", "calico-typha")
    assert s.server_batch_interval_secs == 0.05
    assert SPEC.config_file == "/etc/calico/typha.cfg"


def test_environment_over_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "typha.cfg"
    cfg.write_text("[global]\nServerPort = 6000\nMaxConnectionsUpperLimit = 50\n")
    loaded = SPEC.load(["-c", str(cfg)], {"TYPHA_SERVERPORT": "7000", "TYPHA_PINGINTERVAL": "x"})
    assert loaded.settings.server_port == 7000
    assert loaded.settings.max_connections_upper_limit == 50
    assert str(loaded.source_of("MaxConnectionsUpperLimit")).endswith("typha.cfg:3")
    assert any("TYPHA_PINGINTERVAL" in w for w in loaded.warnings)


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"TYPHA_CAFILE": "/ca.pem"}, "missing: ServerCertFile, ServerKeyFile, ClientCN or ClientURISAN"),
        ({"TYPHA_CLIENTCN": "felix"}, "missing: CAFile, ServerCertFile, ServerKeyFile$"),
        ({"TYPHA_CAFILE": "a", "TYPHA_SERVERCERTFILE": "b", "TYPHA_SERVERKEYFILE": "c"}, "ClientCN or ClientURISAN"),
        ({"TYPHA_MAXCONNECTIONSLOWERLIMIT": "0"}, "MaxConnectionsLowerLimit"),
        ({"TYPHA_CONNECTIONREBALANCINGMODE": "auto"}, "ConnectionRebalancingMode"),
    ],
)
def test_bad_settings_are_start_up_errors(env: dict[str, str], match: str) -> None:
    with pytest.raises(SettingsError, match=match):
        SPEC.load([], env)


def test_complete_tls_settings() -> None:
    env = {"TYPHA_CAFILE": "a", "TYPHA_SERVERCERTFILE": "b", "TYPHA_SERVERKEYFILE": "c",
           "TYPHA_CLIENTURISAN": "spiffe://cluster.local/ns/calico/sa/felix"}
    tls = SPEC.load([], env).settings.tls
    assert (tls.ca_file, tls.cert_file, tls.key_file, tls.peer_cn, tls.peer_uri_san) == (
        "a", "b", "c", "", "spiffe://cluster.local/ns/calico/sa/felix")
