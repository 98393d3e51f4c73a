"""calicoctl's command line: docopt-style flags → Options → a command → printed result and exit status.

The only module that reads argv and the environment. Global options
(``-l/--log-level``, ``--context``, ``--allow-version-mismatch``) come before
the command; each command then takes Calico's flags in any order. Output goes
to stdout, errors to stderr; the exit status is 0 on success and 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import NoReturn

import structlog

from services.calicoctl import usage
from services.calicoctl.commands import Options, execute
from services.calicoctl.errors import CalicoctlError, UsageError

LOG_LEVELS = {"panic": logging.CRITICAL, "fatal": logging.CRITICAL, "error": logging.ERROR,
              "warn": logging.WARNING, "warning": logging.WARNING, "info": logging.INFO, "debug": logging.DEBUG}


class _Parser(argparse.ArgumentParser):
    """An argparse parser that reports misuse as calicoctl does, instead of exiting."""

    def __init__(self, argv: list[str], **kwargs: object) -> None:
        super().__init__(add_help=False, allow_abbrev=False, **kwargs)  # type: ignore[arg-type]
        self.argv = argv

    def error(self, message: str) -> NoReturn:
        raise UsageError(self.argv)


def _common(p: _Parser, namespace: bool = True) -> None:
    p.add_argument("-c", "--config")
    if namespace:
        p.add_argument("-n", "--namespace", default="")
    p.add_argument("--context")
    p.add_argument("--allow-version-mismatch", action="store_true")


def _file(p: _Parser, required: bool) -> None:
    p.add_argument("-f", "--filename", required=required)
    p.add_argument("-R", "--recursive", action="store_true")
    p.add_argument("--skip-empty", action="store_true")


def _parser(command: str, argv: list[str]) -> _Parser:
    p = _Parser(argv, prog=f"calicoctl {command}")
    if command in ("apply", "create", "replace"):
        _file(p, required=True)
        _common(p)
        if command == "create":
            p.add_argument("--skip-exists", action="store_true")
    elif command in ("get", "delete"):
        p.add_argument("kind", nargs="?")
        p.add_argument("names", nargs="*")
        _file(p, required=False)
        _common(p)
        if command == "get":
            p.add_argument("-o", "--output", default="ps")
            p.add_argument("-A", "--all-namespaces", action="store_true")
            p.add_argument("--export", action="store_true")
        else:
            p.add_argument("-s", "--skip-not-exists", action="store_true")
    elif command == "patch":
        p.add_argument("kind")
        p.add_argument("name")
        p.add_argument("-p", "--patch", required=True)
        p.add_argument("-t", "--type", default="strategic", choices=("strategic", "json", "merge"))
        _common(p)
    elif command == "label":
        p.add_argument("kind")
        p.add_argument("name")
        p.add_argument("label")
        p.add_argument("--overwrite", action="store_true")
        p.add_argument("--remove", action="store_true")
        _common(p)
    elif command == "validate":
        _file(p, required=True)
        p.add_argument("--allow-version-mismatch", action="store_true")
    elif command == "version":
        p.add_argument("-c", "--config")
        p.add_argument("--allow-version-mismatch", action="store_true")
    return p


def parse_command(command: str, args: list[str], env: dict[str, str]) -> Options:
    """Parse one command's arguments into Options; raise UsageError when they do not fit its usage."""
    argv = [command, *args]
    if command == "get":
        args = ["-A" if a == "-a" else a for a in args]  # Calico keeps -a working for -A
    ns = _parser(command, argv).parse_intermixed_args(args)
    if getattr(ns, "context", None):
        env = dict(env, K8S_CURRENT_CONTEXT=ns.context)  # as Calico: the kubeconfig context to use
    opts = Options(command=command, env=env, config=getattr(ns, "config", None))
    opts.filename = getattr(ns, "filename", None)
    opts.recursive = getattr(ns, "recursive", False)
    opts.skip_empty = getattr(ns, "skip_empty", False)
    opts.namespace = getattr(ns, "namespace", "") or ""
    if command in ("get", "delete"):
        has_kind = ns.kind is not None
        if has_kind == (opts.filename is not None):
            raise UsageError(argv)
        opts.kind, opts.names = ns.kind, list(ns.names)
    if command == "get":
        opts.output, opts.all_namespaces, opts.export = ns.output, ns.all_namespaces, ns.export
    if command == "delete":
        opts.skip_not_exists = ns.skip_not_exists
    if command == "create":
        opts.skip_exists = ns.skip_exists
    if command == "patch":
        opts.kind, opts.names, opts.patch, opts.patch_type = ns.kind, [ns.name], ns.patch, ns.type
    if command == "label":
        if ns.overwrite and ns.remove:
            raise UsageError(argv)
        if not ns.remove and "=" not in ns.label:
            raise UsageError(argv)
        opts.kind, opts.names, opts.label = ns.kind, [ns.name], ns.label
        opts.overwrite, opts.remove = ns.overwrite, ns.remove
    return opts


def configure_logging(level: int) -> None:
    """Log to stderr through structlog, at and above ``level``."""
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso"),
                    structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def _split_global(argv: list[str]) -> tuple[int, list[str], list[str], str] | int:
    """Take the global options off the front; return (log level, command, rest, context) or an exit status."""
    level = "panic"
    context = ""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        arg = argv[i]
        if arg in ("-h", "--help"):
            sys.stdout.write(usage.MAIN)
            return 0
        if arg in ("-l", "--log-level") and i + 1 < len(argv):
            level, i = argv[i + 1], i + 2
        elif arg.startswith("--log-level="):
            level, i = arg.split("=", 1)[1], i + 1
        elif arg == "--context" and i + 1 < len(argv):
            context, i = argv[i + 1], i + 2
        elif arg.startswith("--context="):
            context, i = arg.split("=", 1)[1], i + 1
        elif arg == "--allow-version-mismatch":
            i += 1
        else:
            sys.stdout.write(f"Invalid option: '{' '.join(argv)}'. Use flag '--help' to read about a specific "
                             "subcommand.\n")
            return 1
    if level.lower() not in LOG_LEVELS:
        sys.stdout.write(f"Unknown log level: {level}, expected one of: \npanic, fatal, error, warn, info, debug.\n")
        return 1
    if i >= len(argv):
        sys.stdout.write(usage.MAIN)
        return 1
    return LOG_LEVELS[level.lower()], argv[i:i + 1], argv[i + 1:], context


def run(argv: list[str]) -> int:
    """Run calicoctl on these arguments; return the exit status."""
    split = _split_global(argv)
    if isinstance(split, int):
        return split
    level, (command,), args, context = split
    configure_logging(level)
    if command == "ipam":
        from services.calicoctl.ipam import run_ipam

        return run_ipam(args, dict(os.environ))
    if command == "explain":
        from services.calicoctl.explain import run_explain

        return run_explain(args, dict(os.environ, **({"K8S_CURRENT_CONTEXT": context} if context else {})))
    if command not in usage.COMMANDS:
        sys.stderr.write(f'unknown command: "{command}"\n{usage.MAIN}')
        return 1
    if "-h" in args or "--help" in args:
        sys.stdout.write(usage.COMMANDS[command])
        return 0
    try:
        env = dict(os.environ)
        if context:
            env["K8S_CURRENT_CONTEXT"] = context
        opts = parse_command(command, args, env)
        summary = asyncio.run(execute(opts))
    except CalicoctlError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    sys.stdout.write(summary.stdout)
    sys.stdout.flush()
    if summary.error is not None:
        sys.stderr.write(f"{summary.error}\n")
        return 1
    return 0
