"""What each calicoctl command does, given its parsed options; each returns a Summary to print.

Commands that read ``-f`` load and validate every document first (see
:mod:`services.calicoctl.manifest`) and check every namespace before the
datastore is opened, so a manifest with any bad document writes nothing.
Datastore failures after that are per resource, reported with Calico's
summary lines.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import structlog

from libcalico.datastore import Client
from libcalico.errors import AlreadyExists, CalicoError, NotFound
from libcalico.resources.base import Resource, kind_class, lookup_kind
from services.calicoctl import actions, manifest
from services.calicoctl.columns import DEFAULT_AS_NUMBER, TableContext
from services.calicoctl.connection import datastore_env, open_client
from services.calicoctl.errors import CalicoctlError, EmptyManifest, ManifestError
from services.calicoctl.output import (
    Listing,
    OutputFormat,
    Printable,
    needs_as_number,
    parse_output,
    render,
)
from services.calicoctl.summary import (
    Results,
    Summary,
    bulk_summary,
    delete_summary,
    replace_summary,
)

log = structlog.get_logger("calicoctl")


@dataclass
class Options:
    """Everything a command needs from the command line and the environment."""

    command: str
    env: Mapping[str, str] = field(default_factory=dict)
    config: str | None = None
    filename: str | None = None
    recursive: bool = False
    skip_empty: bool = False
    kind: str | None = None
    names: list[str] = field(default_factory=list)
    namespace: str = ""
    all_namespaces: bool = False
    output: str = "ps"
    export: bool = False
    skip_exists: bool = False
    skip_not_exists: bool = False
    patch: str = ""
    patch_type: str = "strategic"
    label: str = ""
    overwrite: bool = False
    remove: bool = False


@dataclass(frozen=True)
class Target:
    """One resource a command acts on: its kind, name, namespace, and the manifest entry if any."""

    cls: type[Resource]
    name: str
    namespace: str | None
    resource: Resource | None = None
    source: str = ""


def client_version() -> str:
    """This calicoctl's version, as ``v<package version>``."""
    try:
        return "v" + importlib.metadata.version("calico-py")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _file_targets(opts: Options, execute_word: str) -> list[Target]:
    """Load ``-f`` and place every document in its namespace; raise CalicoctlError when anything is wrong."""
    assert opts.filename is not None
    try:
        docs = manifest.load(opts.filename, opts.recursive, opts.skip_empty)
    except ManifestError as exc:
        raise CalicoctlError(f"{execute_word}: {exc}") from None
    targets: list[Target] = []
    problems: list[str] = []
    for doc in docs:
        res = doc.resource
        try:
            ns = actions.resolve_namespace(type(res), res.namespace, opts.namespace, False)
        except CalicoctlError as exc:
            problems.append(f"{doc.source}: {exc}")
            continue
        res = actions.with_namespace(res, ns)
        targets.append(Target(type(res), res.name, ns, res, doc.source))
    if problems:
        raise CalicoctlError(f"{execute_word}: " + "\n".join(problems))
    return targets


def _single_kind(targets: list[Target]) -> str:
    kinds = {t.cls.KIND.kind for t in targets}
    return kinds.pop() if len(kinds) == 1 else ""


async def _with_client(opts: Options, body: Callable[[Client], Awaitable[Summary]]) -> Summary:
    env = datastore_env(opts.config, opts.env)
    async with open_client(env) as client:
        return await body(client)


# ---------------------------------------------------------------- apply / create / replace


async def write(opts: Options) -> Summary:
    """apply, create or replace every resource in ``-f``."""
    word = "Failed to execute command"
    try:
        targets = _file_targets(opts, word)
    except EmptyManifest as exc:
        return Summary(error=str(exc))
    results = Results(len(targets), 0, _single_kind(targets))
    if not targets:
        return Summary("No resources specified\n")

    async def body(client: Client) -> Summary:
        for target in targets:
            assert target.resource is not None
            try:
                if opts.command == "apply":
                    await actions.apply(client, target.resource)
                elif opts.command == "create":
                    try:
                        await actions.create(client, target.resource)
                    except AlreadyExists:
                        if not opts.skip_exists:
                            raise
                else:
                    await actions.replace(client, target.resource)
            except (CalicoError, CalicoctlError) as exc:
                log.debug("resource_failed", command=opts.command, source=target.source, error=str(exc))
                results.errors.append(str(exc))
                if opts.command == "replace":
                    break
                continue
            results.num_handled += 1
        if opts.command == "replace":
            return replace_summary(results)
        past = {"apply": "applied", "create": "created"}[opts.command]
        return bulk_summary(results, opts.command, past)

    return await _with_client(opts, body)


async def validate(opts: Options) -> Summary:
    """Check every resource in ``-f`` without touching a datastore."""
    try:
        targets = _file_targets(opts, "failed to execute command")
    except EmptyManifest as exc:
        return Summary(error=str(exc))
    results = Results(len(targets), len(targets), _single_kind(targets))
    return bulk_summary(results, "validate", "validated", lower=True)


# ---------------------------------------------------------------- get / delete


def _arg_targets(opts: Options) -> tuple[type[Resource], list[str]]:
    assert opts.kind is not None
    cls = lookup_kind(opts.kind)
    if any(name == "" for name in opts.names):
        raise CalicoctlError("resource name may not be empty")
    return cls, opts.names


async def _as_number(client: Client) -> str:
    try:
        cfg = await client.get(kind_class("BGPConfiguration"), "default")
    except NotFound:
        return DEFAULT_AS_NUMBER
    except CalicoError:
        return "unknown"
    asn = cfg.to_dict().get("spec", {}).get("asNumber")
    return str(asn) if asn else DEFAULT_AS_NUMBER


async def get(opts: Options) -> Summary:
    """Print resources named by kind (and names) or by ``-f``, in the ``-o`` format."""
    fmt: OutputFormat = parse_output(opts.output)
    print_namespace = opts.all_namespaces or bool(opts.namespace)
    targets: list[Target] = []
    listing: type[Resource] | None = None
    errors: list[str] = []
    if opts.filename is not None:
        try:
            targets = _file_targets(opts, "Failed to execute command")
        except EmptyManifest as exc:
            return Summary(error=str(exc))
    else:
        try:
            cls, names = _arg_targets(opts)
        except CalicoError as exc:
            return Summary(error=f"Failed to get resources: {exc}")
        try:
            ns = actions.resolve_namespace(cls, None, opts.namespace, opts.all_namespaces)
        except CalicoctlError as exc:
            return Summary(error=str(exc))
        if names:
            targets = [Target(cls, name, ns) for name in names]
        else:
            listing = cls
            targets = [Target(cls, "", ns)]

    async def body(client: Client) -> Summary:
        results: list[Printable] = []
        for target in targets:
            try:
                if listing is not None:
                    items, revision = await client.list(listing, target.namespace)
                    results.append(Listing(listing, items, revision))
                else:
                    results.append(await actions.get(client, target.cls, target.name, target.namespace))
            except (CalicoError, CalicoctlError) as exc:
                errors.append(str(exc))
        ctx = TableContext()
        if needs_as_number(results, fmt):
            ctx.as_number = await _as_number(client)
        text = render(results, fmt, print_namespace, opts.export and listing is None, ctx)
        return Summary(text, "\n".join(errors) if errors else None)

    return await _with_client(opts, body)


async def delete(opts: Options) -> Summary:
    """Delete resources named by kind and names, or by ``-f``."""
    if opts.filename is not None:
        try:
            targets = _file_targets(opts, "Failed to execute command")
        except EmptyManifest as exc:
            return Summary(error=str(exc))
    else:
        try:
            cls, names = _arg_targets(opts)
        except CalicoError as exc:
            return Summary(error=str(exc))
        if not names:
            return Summary(error="No resources specified")
        try:
            ns = actions.resolve_namespace(cls, None, opts.namespace, False)
        except CalicoctlError as exc:
            results = Results(len(names), 0, cls.KIND.kind, [str(exc)] * len(names))
            return delete_summary(results)
        targets = [Target(cls, name, ns) for name in names]
    results = Results(len(targets), 0, _single_kind(targets) if opts.filename else targets[0].cls.KIND.kind)

    async def body(client: Client) -> Summary:
        for target in targets:
            rv = target.resource.metadata.resourceVersion if target.resource is not None else None
            try:
                await actions.delete(client, target.cls, target.name, target.namespace, rv)
            except NotFound as exc:
                if not opts.skip_not_exists:
                    results.errors.append(str(exc))
                    continue
            except (CalicoError, CalicoctlError) as exc:
                results.errors.append(str(exc))
                continue
            results.num_handled += 1
        return delete_summary(results)

    return await _with_client(opts, body)


# ---------------------------------------------------------------- patch / label


async def patch(opts: Options) -> Summary:
    """Merge-patch one resource named by kind and name."""
    try:
        cls, names = _arg_targets(opts)
    except CalicoError as exc:
        return Summary(error=str(exc))
    name = names[0]
    if opts.patch_type == "json":
        return Summary(error="Hit error: patch type 'json' (RFC 6902) is not supported; use strategic or merge")
    try:
        patch_doc = actions.parse_patch(opts.patch)
        ns = actions.resolve_namespace(cls, None, opts.namespace, False)
    except CalicoctlError as exc:
        return Summary(error=f"Hit error: {exc}")

    async def body(client: Client) -> Summary:
        try:
            await actions.patch(client, cls, name, ns, patch_doc)
        except (CalicoError, CalicoctlError) as exc:
            return Summary(error=f"Hit error: {exc}")
        return Summary(f"Successfully patched 1 '{cls.KIND.kind}' resource\n")

    return await _with_client(opts, body)


def _parse_label(opts: Options) -> tuple[str, str]:
    if opts.remove:
        return opts.label, ""
    parts = opts.label.split("=")
    if len(parts) != 2:
        raise CalicoctlError(f"invalid label {opts.label}")
    return parts[0], parts[1]


async def label(opts: Options) -> Summary:
    """Set, overwrite or remove one label of one resource."""
    kind_word, name = opts.kind or "", opts.names[0]
    try:
        key, value = _parse_label(opts)
    except CalicoctlError as exc:
        return Summary(error=str(exc))
    try:
        cls, _ = _arg_targets(opts)
        ns = actions.resolve_namespace(cls, None, opts.namespace, False)
    except (CalicoError, CalicoctlError) as exc:
        return Summary(error=f"failed to get {kind_word} {name}, error {exc}")

    async def body(client: Client) -> Summary:
        try:
            current = await actions.get(client, cls, name, ns)
        except NotFound:
            return Summary(error=f"{kind_word} {name} not found")
        except (CalicoError, CalicoctlError) as exc:
            return Summary(error=f"failed to get {kind_word} {name}, error {exc}")
        labels = dict(current.metadata.labels or {})
        overwritten = False
        if opts.remove:
            if key not in labels:
                return Summary(error=f"cannot remove label of {kind_word} {name}, key {key} does not exist")
            del labels[key]
        elif key in labels:
            if not (opts.overwrite or labels[key] == value):
                return Summary(error=f"failed to update label of {kind_word} {name}, key {key} is already present. "
                                     "please use '--overwrite' to set a new value.")
            labels[key] = value
            overwritten = True
        else:
            labels[key] = value
        try:
            await actions.set_labels(client, current, labels)
        except (CalicoError, CalicoctlError) as exc:
            return Summary(error=f"failed to update {kind_word} {name}, label not changed: {exc}")
        if opts.remove:
            return Summary(f"Successfully removed label {key} from {kind_word} {name}\n")
        if overwritten:
            return Summary(f"Successfully updated label {key} on {kind_word} {name}\n")
        return Summary(f"Successfully set label {key} on {kind_word} {name}\n")

    return await _with_client(opts, body)


# ---------------------------------------------------------------- version


async def version(opts: Options) -> Summary:
    """Print the client version, then the cluster's version and type from ClusterInformation."""
    out = f"Client Version:    {client_version()}\nGit commit:        unknown\n"

    async def body(client: Client) -> Summary:
        try:
            info = await client.get(kind_class("ClusterInformation"), "default")
        except CalicoError as exc:
            return Summary(out, f"Unable to retrieve Cluster Version or Type: {exc}")
        spec = info.to_dict().get("spec", {})
        cluster_version = spec.get("calicoVersion") or "unknown"
        cluster_type = spec.get("clusterType") or "unknown"
        return Summary(out + f"Cluster Version:   {cluster_version}\nCluster Type:      {cluster_type}\n")

    try:
        return await _with_client(opts, body)
    except CalicoctlError as exc:
        return Summary(out, str(exc))


COMMANDS: dict[str, Callable[[Options], Awaitable[Summary]]] = {
    "apply": write, "create": write, "replace": write, "delete": delete, "get": get,
    "patch": patch, "label": label, "validate": validate, "version": version,
}


async def execute(opts: Options) -> Summary:
    """Run the command the options name."""
    return await COMMANDS[opts.command](opts)
