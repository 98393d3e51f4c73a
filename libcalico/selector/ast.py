"""The selector syntax tree: canonical printing, label restrictions and compilation.

Each node prints itself the way Calico's ``String()`` does: every ``&&`` /
``||`` group in parentheses, ``!`` glued to its operand, strings in double
quotes unless they hold one, sets sorted and de-duplicated. Compilation turns
a tree into one Python lambda over the label mapping (generated source,
constants passed by name), which is several times faster than walking the
tree; a tree too deep for Python's compiler falls back to nested closures.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

Labels = Mapping[str, str]
Evaluator = Callable[[Labels], bool]


@dataclass(frozen=True, slots=True)
class LabelRestriction:
    """What a selector requires of one label for it to match (Calico's LabelRestriction).

    ``values`` is None when any value will do; an empty frozenset means the
    selector can never match.
    """

    must_be_present: bool = False
    must_be_absent: bool = False
    values: frozenset[str] | None = None


Restrictions = dict[str, LabelRestriction]


def quote(value: str) -> str:
    """Quote a string literal as Calico prints it."""
    q = "'" if '"' in value else '"'
    return q + value + q


class _Consts:
    """Names the constants that generated code refers to."""

    def __init__(self) -> None:
        self.names: dict[str, object] = {}
        self._ids: dict[tuple[type, object], str] = {}

    def add(self, value: object) -> str:
        key = (type(value), value)
        name = self._ids.get(key)
        if name is None:
            name = f"c{len(self._ids)}"
            self._ids[key] = name
            self.names[name] = value
        return name


class Node:
    """Base of every selector node."""

    __slots__ = ()

    def write(self, out: list[str]) -> None:
        """Append this node's canonical text fragments to ``out``."""
        raise NotImplementedError

    def source(self, consts: _Consts) -> str:
        """Return a Python expression over ``L`` (the labels) that evaluates this node."""
        raise NotImplementedError

    def closure(self) -> Evaluator:
        """Return a closure that evaluates this node (used when code generation is impossible)."""
        raise NotImplementedError

    def restrictions(self) -> Restrictions:
        """Return what this node requires of individual labels."""
        return {}

    def __str__(self) -> str:
        out: list[str] = []
        self.write(out)
        return "".join(out)


@dataclass(frozen=True, slots=True)
class All(Node):
    """``all()``, and the empty selector: matches everything."""

    def write(self, out: list[str]) -> None:
        out.append("all()")

    def source(self, consts: _Consts) -> str:
        return "True"

    def closure(self) -> Evaluator:
        return lambda labels: True


@dataclass(frozen=True, slots=True)
class Global(Node):
    """``global()``: evaluates true, like Calico's GlobalNode.

    Its meaning comes from where it is used: only in a rule's
    ``namespaceSelector``, where it widens the rule's ``selector`` to
    non-namespaced resources (GlobalNetworkSets, HostEndpoints). That scoping is
    the policy calculation's job; ``Selector.is_global`` tells it apart.
    """

    def write(self, out: list[str]) -> None:
        out.append("global()")

    def source(self, consts: _Consts) -> str:
        return "True"

    def closure(self) -> Evaluator:
        return lambda labels: True


@dataclass(frozen=True, slots=True)
class Has(Node):
    """``has(key)``: the label is present."""

    key: str

    def write(self, out: list[str]) -> None:
        out.extend(("has(", self.key, ")"))

    def source(self, consts: _Consts) -> str:
        return f"({consts.add(self.key)} in L)"

    def closure(self) -> Evaluator:
        key = self.key
        return lambda labels: key in labels

    def restrictions(self) -> Restrictions:
        return {self.key: LabelRestriction(must_be_present=True)}


@dataclass(frozen=True, slots=True)
class Compare(Node):
    """``key OP "value"`` for ==, !=, contains, starts with, ends with."""

    key: str
    op: str
    value: str

    def write(self, out: list[str]) -> None:
        out.extend((self.key, " ", self.op, " ", quote(self.value)))

    def source(self, consts: _Consts) -> str:
        k = consts.add(self.key)
        op, value = self.op, self.value
        if op == "==":
            return f"(L.get({k}) == {consts.add(value)})"
        if op == "!=":
            return f"(L.get({k}) != {consts.add(value)})"
        if value == "":
            return f"({k} in L)"  # every present value contains / starts / ends with ""
        v = consts.add(value)
        if op == "contains":
            return f"({v} in (L.get({k}) or ''))"
        method = "startswith" if op == "starts with" else "endswith"
        return f"(L.get({k}) or '').{method}({v})"

    def closure(self) -> Evaluator:
        key, value, op = self.key, self.value, self.op
        if op == "==":
            return lambda labels: labels.get(key) == value
        if op == "!=":
            return lambda labels: labels.get(key) != value
        if op == "contains":
            return lambda labels: key in labels and value in labels[key]
        if op == "starts with":
            return lambda labels: key in labels and labels[key].startswith(value)
        return lambda labels: key in labels and labels[key].endswith(value)

    def restrictions(self) -> Restrictions:
        if self.op == "!=":
            return {}
        values = frozenset((self.value,)) if self.op == "==" else None
        return {self.key: LabelRestriction(must_be_present=True, values=values)}


@dataclass(frozen=True, slots=True)
class InSet(Node):
    """``key in {...}`` or, with ``negated``, ``key not in {...}``; values sorted and unique."""

    key: str
    values: tuple[str, ...]
    negated: bool = False

    def write(self, out: list[str]) -> None:
        out.extend((self.key, " not in {" if self.negated else " in {"))
        out.append(", ".join(quote(v) for v in self.values))
        out.append("}")

    def source(self, consts: _Consts) -> str:
        k = consts.add(self.key)
        if len(self.values) == 1:
            v = consts.add(self.values[0])
            return f"(L.get({k}) {'!=' if self.negated else '=='} {v})"
        s = consts.add(frozenset(self.values))
        return f"(L.get({k}) {'not in' if self.negated else 'in'} {s})"

    def closure(self) -> Evaluator:
        key, values = self.key, frozenset(self.values)
        if self.negated:
            return lambda labels: labels.get(key) not in values
        return lambda labels: labels.get(key) in values

    def restrictions(self) -> Restrictions:
        if self.negated:
            return {}
        return {self.key: LabelRestriction(must_be_present=True, values=frozenset(self.values))}


@dataclass(frozen=True, slots=True)
class Not(Node):
    """``!operand``."""

    operand: Node

    def write(self, out: list[str]) -> None:
        out.append("!")
        self.operand.write(out)

    def source(self, consts: _Consts) -> str:
        return f"(not {self.operand.source(consts)})"

    def closure(self) -> Evaluator:
        inner = self.operand.closure()
        return lambda labels: not inner(labels)

    def restrictions(self) -> Restrictions:
        if isinstance(self.operand, Has):
            return {self.operand.key: LabelRestriction(must_be_absent=True)}
        return {}


@dataclass(frozen=True, slots=True)
class And(Node):
    """``a && b && ...`` (two or more operands)."""

    operands: tuple[Node, ...] = field(default=())

    def write(self, out: list[str]) -> None:
        _write_group(out, self.operands, " && ")

    def source(self, consts: _Consts) -> str:
        return "(" + " and ".join(o.source(consts) for o in self.operands) + ")"

    def closure(self) -> Evaluator:
        inner = tuple(o.closure() for o in self.operands)
        return lambda labels: all(f(labels) for f in inner)

    def restrictions(self) -> Restrictions:
        out: Restrictions = {}
        for operand in self.operands:
            for key, r in operand.restrictions().items():
                base = out.get(key)
                if base is None:
                    out[key] = r
                    continue
                if base.values is None:
                    values = r.values
                elif r.values is None:
                    values = base.values
                else:
                    values = base.values & r.values
                out[key] = LabelRestriction(
                    base.must_be_present or r.must_be_present,
                    base.must_be_absent or r.must_be_absent,
                    values,
                )
        return out


@dataclass(frozen=True, slots=True)
class Or(Node):
    """``a || b || ...`` (two or more operands)."""

    operands: tuple[Node, ...] = field(default=())

    def write(self, out: list[str]) -> None:
        _write_group(out, self.operands, " || ")

    def source(self, consts: _Consts) -> str:
        return "(" + " or ".join(o.source(consts) for o in self.operands) + ")"

    def closure(self) -> Evaluator:
        inner = tuple(o.closure() for o in self.operands)
        return lambda labels: any(f(labels) for f in inner)

    def restrictions(self) -> Restrictions:
        out = dict(self.operands[0].restrictions())
        for operand in self.operands[1:]:
            other = operand.restrictions()
            for key, r in list(out.items()):
                o = other.get(key, LabelRestriction())
                present = r.must_be_present and o.must_be_present
                absent = r.must_be_absent and o.must_be_absent
                values = (
                    r.values | o.values
                    if present and r.values is not None and o.values is not None
                    else None
                )
                if present or absent:
                    out[key] = LabelRestriction(present, absent, values)
                else:
                    del out[key]
        return out


def _write_group(out: list[str], operands: tuple[Node, ...], sep: str) -> None:
    out.append("(")
    for i, operand in enumerate(operands):
        if i:
            out.append(sep)
        operand.write(out)
    out.append(")")


def compile_node(node: Node) -> Evaluator:
    """Return a fast function ``labels -> bool`` equivalent to ``node``."""
    consts = _Consts()
    try:
        code = "lambda L: " + node.source(consts)
        namespace: dict[str, object] = {"__builtins__": {}, **consts.names}
        fn: Evaluator = eval(code, namespace)  # noqa: S307 - generated here; constants are passed by name
    except (SyntaxError, RecursionError, MemoryError):
        return node.closure()
    return fn
