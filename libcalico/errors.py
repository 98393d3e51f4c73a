"""Errors that cross libcalico's edge.

Every backend translates its native failures into these at the edge, chained
with ``from exc``; callers never see a sqlite, gRPC or HTTP exception.
"""

from __future__ import annotations


class CalicoError(Exception):
    """Base class of every error libcalico raises on purpose."""


class DatastoreError(CalicoError):
    """Base class of datastore failures."""


class NotFound(DatastoreError):
    """The key or resource does not exist."""

    def __init__(self, identifier: str) -> None:
        super().__init__(f"resource does not exist: {identifier}")
        self.identifier = identifier


class AlreadyExists(DatastoreError):
    """A create found the key already present."""

    def __init__(self, identifier: str) -> None:
        super().__init__(f"resource already exists: {identifier}")
        self.identifier = identifier


class RevisionConflict(DatastoreError):
    """A compare-and-swap found a different revision than the caller expected."""

    def __init__(self, identifier: str, expected: int | None = None, actual: int | None = None) -> None:
        detail = f" (expected revision {expected}, found {actual})" if expected is not None else ""
        super().__init__(f"update conflict: {identifier}{detail}")
        self.identifier = identifier
        self.expected = expected
        self.actual = actual


class Unavailable(DatastoreError):
    """The datastore cannot be reached or timed out; the operation may be retried."""


class ResyncRequired(DatastoreError):
    """A watch cannot continue from the requested revision (history compacted, 410 Gone).

    The caller lists again and restarts its watch from the list's revision.
    """

    def __init__(self, requested: int, compacted: int | None = None) -> None:
        detail = f"; history starts after {compacted}" if compacted is not None else ""
        super().__init__(f"watch from revision {requested} is no longer possible{detail}")
        self.requested = requested
        self.compacted = compacted


class ValidationError(CalicoError, ValueError):
    """A resource or field failed validation.

    ``field`` is the dotted path of the offending field (``spec.ingress[0].action``),
    empty when the whole document is at fault; ``reason`` says why.
    """

    def __init__(self, field: str, reason: str, *, source: str = "") -> None:
        self.field = field
        self.reason = reason
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field}: {reason}" if field else f"{where}{reason}")

    def with_source(self, source: str) -> ValidationError:
        """Return a copy that also says where (file and document) the error was found."""
        return ValidationError(self.field, self.reason, source=source)


class MultiValidationError(ValidationError):
    """Several validation failures found in one resource or document."""

    def __init__(self, errors: list[ValidationError], *, source: str = "") -> None:
        self.errors = errors
        first = errors[0]
        super().__init__(first.field, first.reason, source=source)
        lines = [str(e.with_source(source)) if source else str(e) for e in errors]
        self.args = ("\n".join(lines),)

    def with_source(self, source: str) -> MultiValidationError:
        return MultiValidationError([ValidationError(e.field, e.reason) for e in self.errors], source=source)
