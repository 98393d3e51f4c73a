"""calico-typha: settings (Calico's ``TYPHA_*`` names and defaults) and the entry point.

The only module that reads argv and the environment. The datastore is chosen
as everywhere else (``DATASTORE_TYPE``, ``CALICO_DB``, ``ETCD_*``,
``KUBECONFIG``); those variables are handed to the wiring unchanged.
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass

from libcalico.runtime import ServiceSettings, SettingsError, SettingsSpec, launch, setting
from libcalico.runtime.paramtypes import Bool, Duration, Int, OneOf, Port, Str
from libcalico.typha.protocol import DEFAULT_PORT
from libcalico.typha.tls import TLSConfig, TLSConfigError

DATASTORE_ENV = ("DATASTORE_TYPE", "CALICO_DB", "ETCD_ENDPOINTS", "ETCD_CA_CERT_FILE", "ETCD_CERT_FILE",
                 "ETCD_KEY_FILE", "KUBECONFIG")


@dataclass(frozen=True)
class TyphaSettings(ServiceSettings):
    """Every Typha parameter; Calico's name and default where Calico has one (extensions noted)."""

    health_port: int = setting("HealthPort", Port(), 9098, help="port of the health server")
    prometheus_metrics_port: int = setting("PrometheusMetricsPort", Port(), 9093,
                                           help="port of the metrics server")
    server_host: str = setting("ServerHost", Str(), "", help="address to listen on (empty: all)")
    server_port: int = setting("ServerPort", Port(), DEFAULT_PORT, help="port to listen on (0: any free port)")
    server_handshake_timeout_secs: float = setting(
        "ServerHandshakeTimeoutSecs", Duration(), 10.0, help="time a client has for TLS and its hello")
    server_ping_interval_secs: float = setting("ServerPingIntervalSecs", Duration(), 10.0,
                                               help="how often each client is pinged")
    server_pong_timeout_secs: float = setting("ServerPongTimeoutSecs", Duration(), 60.0,
                                              help="a client that answers no ping for this long is dropped")
    server_max_fall_behind_secs: float = setting(
        "ServerMaxFallBehindSecs", Duration(), 300.0,
        help="a client whose oldest unsent update is older than this is sent bye too-slow")
    server_new_client_fall_behind_grace_period: float = setting(
        "ServerNewClientFallBehindGracePeriod", Duration(), 300.0,
        help="extra time a new client has while it receives its snapshot")
    server_max_backlog_bytes: int = setting(
        "ServerMaxBacklogBytes", Int(1), 64 * 1024 * 1024,
        help="extension: a client whose unsent bytes pass this is sent bye too-slow")
    server_max_inbound_frame_bytes: int = setting(
        "ServerMaxInboundFrameBytes", Int(64), 64 * 1024,
        help="extension: largest frame a client may send")
    server_batch_interval_secs: float = setting(
        "ServerBatchIntervalSecs", Duration(), 0.05,
        help="extension: updates are published to clients at most this often (batched)")
    per_node_filtering: bool = setting("PerNodeFiltering", Bool(), True,
                                       help="extension: trim each client's stream to what its node needs")
    server_key_file: str = setting("ServerKeyFile", Str(), "", local=True, help="TLS key of this server")
    server_cert_file: str = setting("ServerCertFile", Str(), "", local=True,
                                    help="TLS certificate of this server")
    ca_file: str = setting("CAFile", Str(), "", local=True, help="CA that signs client certificates")
    client_cn: str = setting("ClientCN", Str(), "", help="required Common Name of client certificates")
    client_uri_san: str = setting("ClientURISAN", Str(), "", help="required URI SAN of client certificates")
    connection_rebalancing_mode: str = setting(
        "ConnectionRebalancingMode", OneOf("none", "kubernetes", "datastore"), "none",
        help="none; kubernetes: count replicas behind the Typha Service; "
             "datastore (extension): count replicas registered in the datastore")
    k8s_namespace: str = setting("K8sNamespace", Str(), "kube-system", help="namespace of the Typha Service")
    k8s_service_name: str = setting("K8sServiceName", Str(), "calico-typha", help="name of the Typha Service")
    k8s_port_name: str = setting("K8sPortName", Str(), "calico-typha",
                                 help="name of the Typha port in the Service's endpoints")
    connection_drop_interval_secs: float = setting("ConnectionDropIntervalSecs", Duration(), 1.0,
                                                   help="time between two connections shed for rebalancing")
    max_connections_upper_limit: int = setting("MaxConnectionsUpperLimit", Int(1), 10000,
                                               help="most connections a replica accepts")
    max_connections_lower_limit: int = setting("MaxConnectionsLowerLimit", Int(1), 400,
                                               help="least connection limit rebalancing may set")
    k8s_service_poll_interval_secs: float = setting(
        "K8sServicePollIntervalSecs", Duration(), 30.0, help="how often replicas and nodes are counted")
    shutdown_timeout_secs: float = setting("ShutdownTimeoutSecs", Duration(), 300.0,
                                           help="time to hand every client over on shutdown")
    shutdown_connection_drop_interval_max_secs: float = setting(
        "ShutdownConnectionDropIntervalMaxSecs", Duration(), 1.0,
        help="longest pause between two clients dropped on shutdown")
    replica_name: str = setting("ReplicaName", Str(), "", help="extension: this replica's id (default: host-pid)")

    def __post_init__(self) -> None:
        try:
            self.tls.check({"ca_file": "CAFile", "cert_file": "ServerCertFile", "key_file": "ServerKeyFile",
                            "peer_cn": "ClientCN", "peer_uri_san": "ClientURISAN"})
        except TLSConfigError as exc:
            raise SettingsError(str(exc), param="ServerKeyFile/ServerCertFile/CAFile/ClientCN/ClientURISAN",
                                source="settings") from None

    @property
    def tls(self) -> TLSConfig:
        """The server's TLS configuration (disabled when nothing is set)."""
        return TLSConfig(self.ca_file, self.server_cert_file, self.server_key_file, self.client_cn,
                         self.client_uri_san)


SPEC = SettingsSpec(TyphaSettings, env_prefix="TYPHA_", config_file="/etc/calico/typha.cfg",
                    program="calico-typha",
                    description="Fan-out of the datastore's syncer streams to every node's agents.")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``calico-typha``."""
    import asyncio

    import uvloop

    from services.typha import app

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())  # ~7x less memory per TLS connection
    datastore_env = {k: v for k, v in os.environ.items() if k in DATASTORE_ENV}
    wire = functools.partial(app.wire, datastore_env=datastore_env)
    return launch(SPEC, wire, sys.argv[1:] if argv is None else argv, os.environ, service="typha",
                  drain_timeout=lambda s: s.shutdown_timeout_secs + 5.0)
