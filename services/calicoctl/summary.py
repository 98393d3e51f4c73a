"""calicoctl's result lines: how many resources were handled, and Calico's wording for failures.

``Results`` counts what a command did; each ``*_summary`` turns it into the
text calicoctl prints on stdout and the error it exits with (None for
success), word for word as calicoctl's apply/create/replace/delete/validate
commands do.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Results:
    """What one resource command did: resources asked for, handled, their kind if only one, and the errors."""

    num_resources: int = 0
    num_handled: int = 0
    single_kind: str = ""
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Summary:
    """Text for stdout, and the error message to exit with (None when the command succeeded)."""

    stdout: str = ""
    error: str | None = None


def go_list(errors: list[str]) -> str:
    """A list of errors printed as Go prints a slice: ``[first second]``."""
    return "[" + " ".join(errors) + "]"


def bulk_summary(res: Results, verb: str, past: str, lower: bool = False) -> Summary:
    """apply, create and validate: continue past failures, then report successes and every error."""
    fail = "failed" if lower else "Failed"
    hit = "hit error(s)" if lower else ("Hit error" if verb == "create" else "Hit error(s)")
    kind = res.single_kind
    if res.num_resources == 0:
        return Summary("No resources specified\n")
    if res.num_handled == 0:
        if res.num_resources == 1:
            return Summary(error=f"{fail} to {verb} '{kind}' resource: {go_list(res.errors)}")
        if kind:
            return Summary(error=f"{fail} to {verb} any '{kind}' resources: {go_list(res.errors)}")
        return Summary(error=f"{fail} to {verb} any resources: {go_list(res.errors)}")
    if not res.errors:
        if kind:
            return Summary(f"Successfully {past} {res.num_handled} '{kind}' resource(s)\n")
        return Summary(f"Successfully {past} {res.num_handled} resource(s)\n")
    out = ""
    if res.num_handled - len(res.errors) > 0:
        what = f"'{kind}' resources" if kind else "resources"
        out = f"Partial success: {past} the first {res.num_handled} out of {res.num_resources} {what}:\n"
    return Summary(out, f"{hit}: {go_list(res.errors)}")


def replace_summary(res: Results) -> Summary:
    """replace: stop at the first failure and say how far it got."""
    kind = res.single_kind
    err = res.errors[0] if res.errors else None
    if res.num_resources == 0:
        return Summary("No resources specified\n")
    if res.num_handled == 0:
        if res.num_resources == 1:
            return Summary(error=f"Failed to replace '{kind}' resource: {err}")
        if kind:
            return Summary(error=f"Failed to replace any '{kind}' resources: {err}")
        return Summary(error=f"Failed to replace any resources: {err}")
    if err is None:
        if kind:
            return Summary(f"Successfully replaced {res.num_handled} '{kind}' resource(s)\n")
        return Summary(f"Successfully replaced {res.num_handled} resource(s)\n")
    what = f"'{kind}' resources" if kind else "resources"
    return Summary(f"Partial success: replaced the first {res.num_handled} out of {res.num_resources} {what}:\n",
                   f"Hit error: {err}")


def delete_summary(res: Results) -> Summary:
    """delete: report the resources deleted, then one failure line per resource that was not."""
    kind = res.single_kind
    if res.num_resources == 0:
        return Summary("No resources specified\n")
    out = ""
    if res.num_handled > 0:
        if kind:
            out = f"Successfully deleted {res.num_handled} '{kind}' resource(s)\n"
        else:
            out = f"Successfully deleted {res.num_handled} resource(s)\n"
    if not res.errors:
        return Summary(out)
    what = f"'{kind}' resource" if kind else "resource"
    return Summary(out, "\n".join(f"Failed to delete {what}: {e}" for e in res.errors))
