"""The start-up code cache: classes and regex patterns built from it are the ones Python builds; the file is
written and trusted only as it should be.

Each check runs in a fresh interpreter: the cache is installed process-wide.
"""

from __future__ import annotations

import json
import marshal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

# Classes of every kind the code generators make: frozen/slotted, defaults and factories, ordering,
# unsafe_hash, keyword-only fields, InitVar/__post_init__, and namedtuples with defaults.
CLASSES = """
import collections, dataclasses, typing
from dataclasses import InitVar, dataclass, field

@dataclass(frozen=True, slots=True)
class Frozen:
    a: int
    b: tuple[str, ...] = ()
    c: dict[str, int] = field(default_factory=dict, compare=False)

@dataclass(order=True, unsafe_hash=True)
class Ordered:
    x: int
    y: str = "y"
    z: int = field(default=0, kw_only=True)

@dataclass
class WithInit:
    total: int = 0
    extra: InitVar[int] = 0
    def __post_init__(self, extra: int) -> None:
        self.total += extra

Pair = collections.namedtuple("Pair", ["left", "right"], defaults=[None])

class Typed(typing.NamedTuple):
    name: str
    size: int = 1

CLASSES = [Frozen, Ordered, WithInit, Pair, Typed]

import re
PATTERNS = PATTERN_LIST

def patterns():
    return [re.compile(p, f) for p, f in PATTERNS]

def behaviour():
    f = Frozen(1, ("a",), {"k": 1})
    try:
        f.a = 2
        frozen = False
    except dataclasses.FrozenInstanceError:
        frozen = True
    o1, o2 = Ordered(1), Ordered(2, "q", z=3)
    w = WithInit(1, extra=2)
    return {
        "frozen": frozen, "eq": f == Frozen(1, ("a",), {"k": 2}), "hash": hash(f) == hash(Frozen(1, ("a",))),
        "repr": [repr(f), repr(o2), repr(w), repr(Pair(1)), repr(Typed("t"))],
        "replace": repr(dataclasses.replace(f, a=5)), "asdict": dataclasses.asdict(o2),
        "order": [o1 < o2, sorted([o2, o1]) == [o1, o2]], "post_init": w.total,
        "tuple": [Pair(1, 2)._asdict(), Typed("t")._replace(size=3)], "slots": Frozen.__slots__,
        "fields": [[fl.name for fl in dataclasses.fields(c)] for c in (Frozen, Ordered, WithInit)],
    }

def codes():
    out = []
    for cls in CLASSES:
        for name in sorted(vars(cls)):
            value = vars(cls)[name]
            value = getattr(value, "__func__", value)  # namedtuple's __new__ is a staticmethod
            value = getattr(value, "__wrapped__", value)  # dataclass __repr__ is wrapped against recursion
            code = getattr(value, "__code__", None)
            if code is not None and code.co_filename == "<string>":
                out.append((cls.__name__, name, code))
    return out
"""


# Patterns of the kinds the services compile: DNS labels, named groups, lookarounds, flags, bytes.
PATTERN_LIST = [
    (r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", 0),
    (r"(?P<key>[A-Za-z_]+)\s*(?P<op>==|!=|in)\s*(?P<value>'[^']*'|\"[^\"]*\")", 0),
    ("(?i)^caf\u00e9\\b(?=x)|(?<!y)z{2,5}?$", 0),
    (r"^\d+(?:\.\d+)?(ns|us|µs|ms|s|m|h)", 256),  # re.ASCII
    (rb"\x00[\x01-\x7f]+", 0),
    (r"a.b # comment", 16 | 8 | 64),  # DOTALL | MULTILINE | VERBOSE
]


def run_python(code: str) -> Any:
    """Run ``code`` in a fresh interpreter; its last stdout line is JSON."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def build(path: Path, *, dont_write: bool = False) -> Any:
    """Install the cache from ``path``, build CLASSES, save; report what happened and how the classes behave."""
    return run_python(f"""
        import json, sys
        sys.dont_write_bytecode = {dont_write!r}
        from libcalico.runtime import codecache
        cache = codecache.install("test", {str(path)!r})
        loaded = sum(len(t) for t in cache.loaded.values())
        exec(compile({CLASSES.replace("PATTERN_LIST", repr(PATTERN_LIST))!r}, "classes", "exec"), globals())
        cached = codes()
        cached_patterns = patterns()
        result = behaviour()
        compiled, stale = cache.compiled, cache.stale
        written = codecache.save_and_uninstall()
        import collections, dataclasses
        restored = "exec" not in vars(dataclasses) and "eval" not in vars(collections)
        # The same classes again with Python's own code generators: the code must be equal.
        exec(compile({CLASSES.replace("PATTERN_LIST", repr(PATTERN_LIST))!r}, "classes", "exec"), globals())
        plain = codes()
        same = [c == p for (_, _, c), (_, _, p) in zip(cached, plain)]
        # And the patterns as re makes them (its own cache emptied first, so they are really made again).
        import re
        re.purge()
        sample = "café zzz key == 'v' 1.5ms a\\nb"
        same += [c == p and c is not p and (c.groups, c.groupindex) == (p.groups, p.groupindex)
                 and c.findall(sample if isinstance(c.pattern, str) else sample.encode())
                 == p.findall(sample if isinstance(p.pattern, str) else sample.encode())
                 for c, p in zip(cached_patterns, patterns())]
        print(json.dumps({{"loaded": loaded, "compiled": compiled, "stale": stale, "written": written,
                          "restored": restored, "same": same, "methods": len(cached),
                          "behaviour": result, "plain": behaviour() == result}}, default=repr))
    """)


def test_a_second_start_builds_every_class_from_the_file_and_the_classes_are_pythons(tmp_path: Path) -> None:
    path = tmp_path / "classcode-test.marshal"
    first = build(path)
    assert (first["loaded"], first["stale"], first["written"], first["restored"]) == (0, True, True, True)
    assert first["compiled"] >= first["methods"] >= 15
    second = build(path)
    assert (second["compiled"], second["stale"], second["written"]) == (0, False, None)  # all from the file
    assert second["loaded"] == first["compiled"]
    for report in (first, second):
        assert report["same"] and all(report["same"])  # code objects equal to the ones Python makes
        assert report["plain"] is True  # and the classes behave as Python's do
    behaviour = second["behaviour"]
    assert behaviour["frozen"] and behaviour["eq"] and behaviour["hash"] and behaviour["order"] == [True, True]
    assert behaviour["post_init"] == 3 and behaviour["asdict"] == {"x": 2, "y": "q", "z": 3}


def test_a_file_of_another_interpreter_or_not_a_cache_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "classcode-test.marshal"
    for content in (b"not marshal at all", marshal.dumps(((1, "another python", "cpython-0"), {"exec": {}})),
                    marshal.dumps([1, 2, 3])):
        path.write_bytes(content)
        report = build(path)
        assert report["loaded"] == 0 and report["compiled"] > 0 and report["plain"] is True
        assert report["written"] is True  # replaced by a good one


def test_entries_no_longer_used_are_dropped_and_nothing_is_written_without_bytecode_writing(tmp_path: Path) -> None:
    path = tmp_path / "classcode-test.marshal"
    build(path)
    header, tables = marshal.loads(path.read_bytes())
    tables["exec"]["def __create_fn__():\n def unused(): pass\n return unused"] = compile("pass", "<string>", "exec")
    path.write_bytes(marshal.dumps((header, tables)))
    report = build(path)
    assert (report["compiled"], report["stale"], report["written"]) == (0, True, True)
    assert "unused" not in "".join(marshal.loads(path.read_bytes())[1]["exec"])

    other = tmp_path / "never-written.marshal"
    report = build(other, dont_write=True)
    assert report["written"] is False and not other.exists()


def test_exec_without_a_namespace_uses_the_callers() -> None:
    """The replacement behaves as the builtin when called without globals, at module level and in a function."""
    report = run_python("""
        import json
        from libcalico.runtime import codecache
        codecache.install("test", "/nonexistent/classcode.marshal")
        codecache._exec("module_level = 1")
        def inner():
            namespace = {}
            codecache._exec("y = 2", namespace)
            return namespace["y"], codecache._eval("module_level + 1")
        print(json.dumps({"module": module_level, "inner": inner()}))
    """)
    assert report == {"module": 1, "inner": [2, 2]}
