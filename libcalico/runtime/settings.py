"""Service settings: declared once, loaded from five sources with one precedence.

How it works::

    defaults < datastore config resource < config file < environment < command-line flags

A service declares its parameters as fields of a frozen dataclass, each made with
:func:`setting` (Calico's parameter name, a :mod:`~libcalico.runtime.paramtypes`
kind, a default). A :class:`SettingsSpec` around that class knows the service's
environment prefix (``FELIX_``, ``TYPHA_``) and config file
(``/etc/calico/felix.cfg``), and :meth:`SettingsSpec.load` turns argv, an
environment mapping and optional config-resource fields into one settings object
plus the source of every value.

As in Calico's ``config_params.go``: environment variables and config-file keys
match the parameter name case-insensitively (``FELIX_HEALTHPORT`` =
``FELIX_HealthPort``), every section of the INI config file is read (Calico's
files use ``[global]``), an empty value is ignored, and ``none`` sets a
parameter to its zero value. Unlike Calico, a bad value from any source is an
error naming the parameter and the source, never silently replaced by the default.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, NoReturn, TypeVar

from libcalico.runtime.errors import SettingsError
from libcalico.runtime.paramtypes import Bool, Kind, LogSeverity, OneOf, Port, Str

if TYPE_CHECKING:
    import argparse

T = TypeVar("T")

_META_KEY = "calico_param"


class Param(NamedTuple):
    """One parameter: Calico's name, its kind and default, and how each source names it.

    ``env`` / ``flag`` / ``field`` of None are derived (``<PREFIX><NAME>``,
    ``--snake-case-attr``, lowerCamel name); an empty string switches that source off.
    ``local`` parameters are never taken from the datastore (Calico's ``local`` flag).
    """

    name: str
    kind: Kind
    default: Any
    env: str | None = None
    flag: str | None = None
    field: str | None = None
    local: bool = False
    non_zero: bool = False
    secret: bool = False
    help: str = ""


def setting(
    name: str,
    kind: Kind,
    default: Any,
    *,
    env: str | None = None,
    flag: str | None = None,
    field: str | None = None,
    local: bool = False,
    non_zero: bool = False,
    secret: bool = False,
    help: str = "",
) -> Any:
    """Declare a parameter as a dataclass field; the default is parsed and checked now."""
    if default is not None:
        try:
            default = kind.coerce(default)
        except ValueError as exc:
            raise SettingsError(str(exc), param=name, source="default", raw=str(default)) from None
    param = Param(name, kind, default, env, flag, field, local, non_zero, secret, help)
    return dataclasses.field(default=default, metadata={_META_KEY: param})


class SourceKind(enum.IntEnum):
    """Where a value came from, in ascending precedence."""

    DEFAULT = 0
    DATASTORE = 1
    CONFIG_FILE = 2
    ENVIRONMENT = 3
    FLAG = 4


class Source(NamedTuple):
    """The source of one value: its kind and where exactly (env var, file:line, flag, resource field)."""

    kind: SourceKind
    where: str

    def __str__(self) -> str:
        return self.where


DEFAULT_SOURCE = Source(SourceKind.DEFAULT, "default")


class _Bound(NamedTuple):
    param: Param
    attr: str
    env: str
    flag: str
    field: str


@dataclass(frozen=True)
class Loaded(Generic[T]):
    """The settings object, the source of each value (by Calico name) and start-up warnings."""

    settings: T
    sources: Mapping[str, Source]
    warnings: tuple[str, ...]
    config_file: str | None
    params: tuple[Param, ...]

    def source_of(self, name: str) -> Source:
        """The source of a parameter, by Calico name (``HealthPort``)."""
        return self.sources[name]

    def log_fields(self) -> dict[str, Any]:
        """Key/values for one start-up log line: every value (secrets masked) and non-default sources."""
        values: dict[str, Any] = {}
        for bound in _bind(type(self.settings)):
            value = getattr(self.settings, bound.attr)
            if bound.param.secret and value:
                values[bound.param.name] = "<set>"
            else:
                values[bound.param.name] = bound.param.kind.render(value) if value is not None else None
        sources = {
            name: str(src) for name, src in sorted(self.sources.items()) if src.kind is not SourceKind.DEFAULT
        }
        return {"settings": values, "sources": sources, "config_file": self.config_file}


def _lower_camel(name: str) -> str:
    match = re.match(r"[A-Z]+", name)
    if match is None:
        return name
    run = match.group()
    if len(run) == len(name):
        return name.lower()
    if len(run) > 1 and name[len(run)].islower():
        return run[:-1].lower() + name[len(run) - 1 :]
    return run.lower() + name[len(run) :]


def _bind(cls: type, env_prefix: str = "") -> list[_Bound]:
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    out = []
    for f in dataclasses.fields(cls):
        param = f.metadata.get(_META_KEY)
        if not isinstance(param, Param):
            continue
        env = (env_prefix + param.name).upper() if param.env is None else param.env
        flag = "--" + f.name.replace("_", "-") if param.flag is None else param.flag
        field = _lower_camel(param.name) if param.field is None else param.field
        out.append(_Bound(param, f.name, env, flag, field))
    return out


def _index(bound: list[_Bound], what: str) -> dict[str, _Bound]:
    table: dict[str, _Bound] = {}
    for b in bound:
        key = b.param.name if what == "name" else getattr(b, what)
        if not key:
            continue
        other = table.get(key.lower())
        if other is not None:
            raise TypeError(f"parameters {other.param.name} and {b.param.name} share the {what} {key!r}")
        table[key.lower()] = b
    return table


def _argument_parser(**kwargs: Any) -> argparse.ArgumentParser:
    """An argparse parser whose errors are SettingsErrors (argparse is imported here: see ``_plain_args``)."""
    import argparse

    class _ArgumentParser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            raise SettingsError(message, source="command line")

    return _ArgumentParser(**kwargs)


_CONFIG_FILE_FLAGS = ("-c", "--config-file")


def _plain_args(argv: Sequence[str]) -> dict[str, Any] | None:
    """What the parser makes of the usual command lines (none, or only ``-c FILE``), without building it.

    Building the parser (one flag per parameter) and importing argparse cost ~3 ms of a service's
    start-up (measured on Felix); anything else goes through the parser, as do its errors and help.
    """
    if not argv:
        return {}
    if len(argv) == 2 and argv[0] in _CONFIG_FILE_FLAGS and not argv[1].startswith("-"):
        return {"_config_file": argv[1]}
    return None


class _Raw(NamedTuple):
    bound: _Bound
    value: Any
    source: Source


class SettingsSpec(Generic[T]):
    """A service's parameters (a dataclass of :func:`setting` fields) and where to look for them."""

    def __init__(
        self,
        cls: type[T],
        *,
        env_prefix: str,
        config_file: str | None = None,
        program: str | None = None,
        description: str = "",
        resource_kind: str = "config resource",
    ) -> None:
        self.cls = cls
        self.env_prefix = env_prefix
        self.config_file = config_file
        self.program = program
        self.description = description
        self.resource_kind = resource_kind
        self.bound = _bind(cls, env_prefix)
        self._by_name = _index(self.bound, "name")
        self._by_env = _index(self.bound, "env")
        self._by_field = _index(self.bound, "field")
        _index(self.bound, "flag")
        self._parser: argparse.ArgumentParser | None = None  # made once, on the first load

    @property
    def params(self) -> tuple[Param, ...]:
        """Every declared parameter."""
        return tuple(b.param for b in self.bound)

    def parser(self) -> argparse.ArgumentParser:
        """The command-line parser: one flag per parameter plus ``-c/--config-file``."""
        import argparse

        parser = _argument_parser(prog=self.program, description=self.description, allow_abbrev=False)
        default_file = f"default {self.config_file}, ignored when absent" if self.config_file else "no default"
        parser.add_argument(
            "-c", "--config-file", dest="_config_file", default=argparse.SUPPRESS, metavar="FILE",
            help=f"INI config file ({default_file})",
        )
        for b in self.bound:
            if not b.flag:
                continue
            extra: dict[str, Any] = {"nargs": "?", "const": "true"} if isinstance(b.param.kind, Bool) else {}
            default = "<set>" if b.param.secret else b.param.default
            env = f"; env {b.env}" if b.env else ""
            text = f"{b.param.help + ' ' if b.param.help else ''}({b.param.name}{env}; default {default})"
            parser.add_argument(
                b.flag, dest=b.attr, default=argparse.SUPPRESS, metavar=b.param.kind.label.upper().replace(" ", "_"),
                help=text.replace("%", "%%"), **extra,
            )
        return parser

    def load(
        self,
        argv: Sequence[str],
        environ: Mapping[str, str],
        datastore: Mapping[str, Any] | Sequence[tuple[str, Mapping[str, Any]]] | None = None,
    ) -> Loaded[T]:
        """Resolve every parameter: defaults < datastore < config file < environment < flags.

        ``datastore`` is a config resource's spec fields (camelCase), or a sequence of
        ``(label, fields)`` layers in ascending precedence (global, then per-host).
        Raises SettingsError naming the parameter and the source of a bad value.
        """
        warnings: list[str] = []
        args = _plain_args(argv)
        if args is None:
            if self._parser is None:
                self._parser = self.parser()
            args = vars(self._parser.parse_args(list(argv)))
        config_path = args.pop("_config_file", None)
        raws: list[_Raw] = []
        raws += self._from_datastore(datastore, warnings)
        config_file = self._config_path(config_path)
        if config_file is not None:
            raws += self._from_file(config_file, warnings)
        raws += self._from_environment(environ, warnings)
        by_attr = {b.attr: b for b in self.bound}
        for attr, raw in args.items():
            b = by_attr[attr]
            raws.append(_Raw(b, raw, Source(SourceKind.FLAG, f"flag {b.flag}")))
        values: dict[str, Any] = {b.attr: b.param.default for b in self.bound}
        sources: dict[str, Source] = {b.param.name: DEFAULT_SOURCE for b in self.bound}
        for raw in sorted(raws, key=lambda r: r.source.kind):  # stable: order within a source kept
            parsed = _parse(raw)
            if parsed is _IGNORED:
                warnings.append(f"{raw.source}: empty value for {raw.bound.param.name} ignored")
                continue
            values[raw.bound.attr] = parsed
            sources[raw.bound.param.name] = raw.source
        return Loaded(self.cls(**values), sources, tuple(warnings), config_file, self.params)

    def _config_path(self, explicit: str | None) -> str | None:
        if explicit is not None:
            if not os.path.exists(explicit):
                raise SettingsError("config file does not exist", source=f"flag --config-file {explicit}")
            return explicit
        if self.config_file is not None and os.path.exists(self.config_file):
            return self.config_file
        return None

    def _from_datastore(
        self,
        datastore: Mapping[str, Any] | Sequence[tuple[str, Mapping[str, Any]]] | None,
        warnings: list[str],
    ) -> list[_Raw]:
        if datastore is None:
            return []
        layers = [(self.resource_kind, datastore)] if isinstance(datastore, Mapping) else list(datastore)
        out = []
        for label, fields in layers:
            for key, value in fields.items():
                b = self._by_field.get(key.lower())
                if b is None:
                    warnings.append(f"{label}: unknown field {key} ignored")
                elif b.param.local:
                    warnings.append(f"{label}: {b.param.name} is local-only; field {key} ignored")
                elif value is not None:
                    out.append(_Raw(b, value, Source(SourceKind.DATASTORE, f"{label} field {key}")))
        return out

    def _from_file(self, path: str, warnings: list[str]) -> list[_Raw]:
        out = []
        for lineno, key, value in read_ini(path):
            b = self._by_name.get(key.lower())
            if b is None:
                warnings.append(f"{path}:{lineno}: unknown parameter {key} ignored")
                continue
            out.append(_Raw(b, value, Source(SourceKind.CONFIG_FILE, f"{path}:{lineno}")))
        return out

    def _from_environment(self, environ: Mapping[str, str], warnings: list[str]) -> list[_Raw]:
        prefix = self.env_prefix.lower()
        found: dict[str, tuple[str, str]] = {}
        out = []
        for key in sorted(environ):
            lower = key.lower()
            b = self._by_env.get(lower)
            if b is None:
                if prefix and lower.startswith(prefix):
                    warnings.append(f"environment variable {key} is not a known parameter; ignored")
                continue
            value = environ[key]
            if lower in found and found[lower][1] != value:
                raise SettingsError(
                    f"set twice with different values (also as {found[lower][0]})",
                    param=b.param.name, source=f"environment variable {key}", raw=value,
                )
            found[lower] = (key, value)
            out.append(_Raw(b, value, Source(SourceKind.ENVIRONMENT, f"environment variable {key}")))
        return out


_IGNORED = object()


def _parse(raw: _Raw) -> Any:
    param = raw.bound.param
    value = raw.value
    if isinstance(value, str):
        if value.strip() == "":
            return _IGNORED
        if value.strip().lower() == "none" and not _is_option(param.kind, "none"):
            if param.non_zero:
                raise SettingsError("this parameter cannot be set to none", param=param.name,
                                    source=str(raw.source), raw=value)
            return param.kind.zero
    try:
        return param.kind.coerce(value)
    except ValueError as exc:
        raise SettingsError(str(exc), param=param.name, source=str(raw.source),
                            raw=value if isinstance(value, str) else repr(value)) from None


def _is_option(kind: Kind, text: str) -> bool:
    return isinstance(kind, OneOf) and text in (o.lower() for o in kind.options)


_INLINE_COMMENT = re.compile(r"\s[#;]")


def read_ini(path: str) -> list[tuple[int, str, str]]:
    """``(line number, key, value)`` for every setting of an INI file, all sections merged in order."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SettingsError(f"cannot read config file: {reason}", source=path) from None
    out = []
    for lineno, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text[0] in "#;":
            continue
        if text.startswith("["):
            if not text.endswith("]") or not text[1:-1].strip():
                raise SettingsError("malformed section header; expected [name]", source=f"{path}:{lineno}")
            continue
        positions = [p for p in (text.find("="), text.find(":")) if p > 0]
        if not positions:
            raise SettingsError("expected 'key = value' or '[section]'", source=f"{path}:{lineno}")
        split = min(positions)
        key, value = text[:split].strip(), text[split + 1 :].strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        else:
            comment = _INLINE_COMMENT.search(value)
            if comment is not None:
                value = value[: comment.start()].rstrip()
        out.append((lineno, key, value))
    return out


@dataclass(frozen=True)
class ServiceSettings:
    """Parameters every service has: log level, health and Prometheus endpoints.

    Subclass and redeclare a field to change its default (Typha: HealthPort 9098).
    """

    log_severity_screen: str = setting("LogSeverityScreen", LogSeverity(), "Info",
                                       help="log level on stderr")
    health_enabled: bool = setting("HealthEnabled", Bool(), False, help="serve /liveness and /readiness")
    health_host: str = setting("HealthHost", Str(), "localhost", help="address of the health server")
    health_port: int = setting("HealthPort", Port(), 9099, help="port of the health server")
    prometheus_metrics_enabled: bool = setting("PrometheusMetricsEnabled", Bool(), False,
                                               help="serve Prometheus /metrics")
    prometheus_metrics_host: str = setting("PrometheusMetricsHost", Str(), "",
                                           help="address of the metrics server (empty: all)")
    prometheus_metrics_port: int = setting("PrometheusMetricsPort", Port(), 9091,
                                           help="port of the metrics server (same as HealthPort: one server)")
