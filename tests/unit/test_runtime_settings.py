"""Settings: one precedence (defaults < datastore < file < env < flags), Calico's names, clear errors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from libcalico.runtime.errors import SettingsError
from libcalico.runtime.paramtypes import Bool, Duration, Int, PortList, ProtoPort, Str, StrList
from libcalico.runtime.settings import ServiceSettings, SettingsSpec, SourceKind, read_ini, setting


@dataclass(frozen=True)
class DemoSettings(ServiceSettings):
    health_port: int = setting("HealthPort", Int(0, 65535), 9099)
    typha_addr: str = setting("TyphaAddr", Str(), "")
    reporting_interval: float = setting("ReportingIntervalSecs", Duration(), 30, field="reportingInterval")
    usage_reporting_enabled: bool = setting("UsageReportingEnabled", Bool(), True)
    failsafe_inbound_host_ports: tuple[ProtoPort, ...] = setting(
        "FailsafeInboundHostPorts", PortList(), "tcp:22,udp:68"
    )
    interface_prefix: tuple[str, ...] = setting("InterfacePrefix", StrList(), "cali")
    max_ipset_size: int = setting("MaxIpsetSize", Int(1), 1048576, non_zero=True)
    hostname: str = setting("FelixHostname", Str(), "", local=True, field="felixHostname")
    etcd_key: str = setting("EtcdKeyFile", Str(), "", secret=True)


def spec(config_file: str | None = None) -> SettingsSpec[DemoSettings]:
    return SettingsSpec(DemoSettings, env_prefix="FELIX_", config_file=config_file, program="calico-felix",
                        resource_kind="FelixConfiguration(default)")


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_defaults_when_nothing_is_set(tmp_path: Path) -> None:
    loaded = spec(str(tmp_path / "absent.cfg")).load([], {})
    s = loaded.settings
    assert s.health_port == 9099
    assert s.reporting_interval == 30.0
    assert s.failsafe_inbound_host_ports == (ProtoPort("tcp", 22), ProtoPort("udp", 68))
    assert s.interface_prefix == ("cali",)
    assert s.log_severity_screen == "Info"
    assert loaded.config_file is None
    assert {src.kind for src in loaded.sources.values()} == {SourceKind.DEFAULT}


def test_precedence_each_source_beats_the_ones_below(tmp_path: Path) -> None:
    cfg = write(tmp_path / "felix.cfg", "[global]\nTyphaAddr = file:5473\nHealthPort = 2\nLogSeverityScreen = Error\n"
                                        "ReportingIntervalSecs = 2\n")
    datastore = {"typhaAddr": "ds:5473", "healthPort": 1, "logSeverityScreen": "Warning",
                 "reportingInterval": "1s", "usageReportingEnabled": False}
    env = {"FELIX_HEALTHPORT": "3", "FELIX_LOGSEVERITYSCREEN": "debug", "PATH": "/bin"}
    loaded = spec().load(["--config-file", cfg, "--log-severity-screen", "FATAL"], env, datastore)
    s = loaded.settings
    assert s.usage_reporting_enabled is False          # datastore only
    assert s.typha_addr == "file:5473"                 # file beats datastore
    assert s.reporting_interval == 2.0                 # file beats datastore
    assert s.health_port == 3                          # env beats file and datastore
    assert s.log_severity_screen == "Fatal"            # flag beats everything
    src = loaded.sources
    assert src["UsageReportingEnabled"].kind is SourceKind.DATASTORE
    assert str(src["UsageReportingEnabled"]) == "FelixConfiguration(default) field usageReportingEnabled"
    assert str(src["TyphaAddr"]) == f"{cfg}:2"
    assert str(src["ReportingIntervalSecs"]) == f"{cfg}:5"
    assert str(src["HealthPort"]) == "environment variable FELIX_HEALTHPORT"
    assert str(src["LogSeverityScreen"]) == "flag --log-severity-screen"
    assert src["MaxIpsetSize"].kind is SourceKind.DEFAULT
    fields = loaded.log_fields()
    assert fields["sources"]["HealthPort"] == "environment variable FELIX_HEALTHPORT"
    assert "MaxIpsetSize" not in fields["sources"]
    assert fields["settings"]["FailsafeInboundHostPorts"] == ["tcp:22", "udp:68"]


def test_env_names_are_case_insensitive_on_the_parameter_part() -> None:
    s = spec().load([], {"FELIX_HealthPort": "9100", "felix_typhaaddr": "t:1"}).settings
    assert (s.health_port, s.typha_addr) == (9100, "t:1")


def test_env_set_twice_with_different_case_and_values_is_an_error() -> None:
    with pytest.raises(SettingsError, match="HealthPort.*set twice"):
        spec().load([], {"FELIX_HEALTHPORT": "1", "FELIX_HealthPort": "2"})


def test_unknown_prefixed_env_var_is_a_warning() -> None:
    loaded = spec().load([], {"FELIX_NOSUCHTHING": "1", "OTHER_HEALTHPORT": "5"})
    assert loaded.settings.health_port == 9099
    assert loaded.warnings == ("environment variable FELIX_NOSUCHTHING is not a known parameter; ignored",)


def test_config_file_keys_sections_comments_and_quotes(tmp_path: Path) -> None:
    cfg = write(tmp_path / "felix.cfg", "; comment\n# another\n[global]\nhealthport: 9200  # inline\n"
                                        "TyphaAddr = \"10.0.0.1:5473\"\n\n[other]\nInterfacePrefix = cali,tap\n"
                                        "Bogus = 1\n")
    loaded = spec(cfg).load([], {})
    s = loaded.settings
    assert (s.health_port, s.typha_addr, s.interface_prefix) == (9200, "10.0.0.1:5473", ("cali", "tap"))
    assert loaded.config_file == cfg
    assert loaded.warnings == (f"{cfg}:9: unknown parameter Bogus ignored",)


def test_config_file_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    cfg = write(tmp_path / "felix.cfg", "[global]\nHealthPort 9200\n")
    with pytest.raises(SettingsError) as err:
        spec(cfg).load([], {})
    assert err.value.source == f"{cfg}:2"
    assert "expected 'key = value'" in str(err.value)


def test_config_file_named_on_the_command_line_must_exist(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="config file does not exist"):
        spec().load(["-c", str(tmp_path / "missing.cfg")], {})


def test_unreadable_config_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read config file"):
        read_ini(str(tmp_path))  # a directory


@pytest.mark.parametrize(
    ("where", "expected_source"),
    [("env", "environment variable FELIX_HEALTHPORT"), ("file", "felix.cfg:2"), ("flag", "flag --health-port"),
     ("datastore", "FelixConfiguration(default) field healthPort")],
)
def test_bad_value_names_source_and_parameter(tmp_path: Path, where: str, expected_source: str) -> None:
    cfg = write(tmp_path / "felix.cfg", "[global]\nHealthPort = 70000\n")
    argv = ["-c", cfg] if where == "file" else (["--health-port", "70000"] if where == "flag" else [])
    env = {"FELIX_HEALTHPORT": "70000"} if where == "env" else {}
    datastore = {"healthPort": 70000} if where == "datastore" else None
    with pytest.raises(SettingsError) as err:
        spec().load(argv, env, datastore)
    assert err.value.param == "HealthPort"
    assert err.value.source.endswith(expected_source)
    assert "70000" in str(err.value) and "at most 65535" in str(err.value)


def test_bad_value_in_a_lower_source_is_still_an_error() -> None:
    with pytest.raises(SettingsError, match="environment variable FELIX_USAGEREPORTINGENABLED"):
        spec().load(["--usage-reporting-enabled=false"], {"FELIX_USAGEREPORTINGENABLED": "maybe"})


def test_empty_value_ignored_and_none_means_zero() -> None:
    loaded = spec().load([], {"FELIX_HEALTHPORT": "", "FELIX_TYPHAADDR": "none",
                              "FELIX_FAILSAFEINBOUNDHOSTPORTS": "None"})
    s = loaded.settings
    assert s.health_port == 9099
    assert s.typha_addr == ""
    assert s.failsafe_inbound_host_ports == ()
    assert "environment variable FELIX_HEALTHPORT: empty value for HealthPort ignored" in loaded.warnings


def test_none_for_a_non_zero_parameter_is_an_error() -> None:
    with pytest.raises(SettingsError, match="MaxIpsetSize: this parameter cannot be set to none"):
        spec().load([], {"FELIX_MAXIPSETSIZE": "none"})


def test_local_parameter_ignored_from_datastore_layers_in_order() -> None:
    layers: list[tuple[str, dict[str, Any]]] = [("FelixConfiguration(default)", {"felixHostname": "x", "healthPort": 1, "reportingInterval": "1m"}),
              ("FelixConfiguration(node.a)", {"healthPort": 2, "extraThing": 1})]
    loaded = spec().load([], {}, layers)
    s = loaded.settings
    assert (s.hostname, s.health_port, s.reporting_interval) == ("", 2, 60.0)
    assert str(loaded.sources["HealthPort"]) == "FelixConfiguration(node.a) field healthPort"
    assert "FelixConfiguration(default): FelixHostname is local-only; field felixHostname ignored" in loaded.warnings
    assert "FelixConfiguration(node.a): unknown field extraThing ignored" in loaded.warnings


def test_typed_datastore_values() -> None:
    datastore = {"failsafeInboundHostPorts": [{"protocol": "UDP", "port": 53}], "interfacePrefix": "cali,tap",
                 "usageReportingEnabled": True}
    s = spec().load([], {}, datastore).settings
    assert s.failsafe_inbound_host_ports == (ProtoPort("udp", 53),)
    assert s.interface_prefix == ("cali", "tap")
    with pytest.raises(SettingsError, match="usageReportingEnabled: invalid value '1'.*expected a boolean"):
        spec().load([], {}, {"usageReportingEnabled": 1})


def test_flags_bool_without_value_and_unknown_flag() -> None:
    s = spec().load(["--health-enabled", "--usage-reporting-enabled=no"], {}).settings
    assert (s.health_enabled, s.usage_reporting_enabled) == (True, False)
    with pytest.raises(SettingsError, match="command line: unrecognized arguments: --bogus"):
        spec().load(["--bogus", "1"], {})
    with pytest.raises(SettingsError, match="command line"):
        spec().load(["--health-p", "1"], {})  # no abbreviations


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        spec().load(["--help"], {})
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--health-port" in out and "FELIX_HEALTHPORT" in out


def test_secret_values_are_masked_in_log_fields() -> None:
    fields = spec().load([], {"FELIX_ETCDKEYFILE": "/secret/key.pem"}).log_fields()
    assert fields["settings"]["EtcdKeyFile"] == "<set>"
    assert "/secret/key.pem" not in repr(fields)


def test_bad_default_fails_at_declaration() -> None:
    with pytest.raises(SettingsError, match="default: invalid value 'abc' for Port: invalid integer"):
        setting("Port", Int(), "abc")


def test_duplicate_names_rejected() -> None:
    @dataclass(frozen=True)
    class Clash:
        a: int = setting("HealthPort", Int(), 1)
        b: int = setting("healthport", Int(), 2, flag="--b", env="X_B", field="b")

    with pytest.raises(TypeError, match="share the name"):
        SettingsSpec(Clash, env_prefix="X_")


def test_subclass_overrides_a_default() -> None:
    @dataclass(frozen=True)
    class TyphaSettings(ServiceSettings):
        health_port: int = setting("HealthPort", Int(0, 65535), 9098)

    loaded = SettingsSpec(TyphaSettings, env_prefix="TYPHA_").load([], {"TYPHA_HEALTHENABLED": "true"})
    assert (loaded.settings.health_port, loaded.settings.health_enabled) == (9098, True)


@pytest.mark.parametrize("argv", [[], ["-c", "CFG"], ["--config-file", "CFG"]])
def test_usual_command_lines_skip_the_parser_with_the_same_result(tmp_path: Path, argv: list[str]) -> None:
    """No flags, or only the config file: read without building argparse's parser, the same settings."""
    cfg = write(tmp_path / "felix.cfg", "[global]\nHealthPort = 2\n")
    argv = [cfg if a == "CFG" else a for a in argv]
    env = {"FELIX_TYPHAADDR": "t:5473"}
    quick = spec()
    via_parser = spec()
    via_parser._parser = via_parser.parser()
    expected = vars(via_parser._parser.parse_args(argv))
    loaded = quick.load(argv, env)
    assert quick._parser is None  # the parser was never built
    reference = via_parser.load(["--typha-addr", "t:5473", *argv], {})  # the same values through the parser
    assert loaded.settings == reference.settings
    assert loaded.config_file == (cfg if argv else None) and expected.get("_config_file") == loaded.config_file


@pytest.mark.parametrize("argv, message", [
    (["-c"], "expected one argument"),
    (["-c", "--health-port"], "expected one argument"),
    (["--config-file=MISSING"], "config file does not exist"),
    (["-c", "MISSING", "--bogus"], "unrecognized arguments"),
])
def test_other_command_lines_still_go_through_the_parser(tmp_path: Path, argv: list[str], message: str) -> None:
    argv = [a.replace("MISSING", str(tmp_path / "missing.cfg")) for a in argv]
    with pytest.raises(SettingsError, match=message):
        spec().load(argv, {})
