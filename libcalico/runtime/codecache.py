"""A per-service cache of what start-up compiles from text: dataclass/namedtuple methods and regex programs.

How it works::

    @dataclass class X: ...    dataclasses writes each method (__init__, __eq__, __repr__, __hash__,
                               __setattr__ ...) as source text and exec()s it: one compile() per method,
                               ~60 us each; ~480 of them on Felix's way to its first apply (~30 ms)
    namedtuple("T", ...)       the same for __new__, through eval()
    re.compile(pattern)        re's parser and compiler (Python code) turn the pattern into a program
                               for the C matcher: ~100 us a pattern, ~40 patterns (~3.5 ms)

    install("felix")  loads <this package>/__pycache__/classcode-felix.<cache tag>.marshal: tables
                      source text -> code object and (pattern, flags) -> program; points the
                      ``exec``/``eval`` names of the ``dataclasses`` and ``collections`` modules, and
                      ``re._compiler.compile``, at lookups in them; what is not there is compiled as
                      Python compiles it, and remembered
    save()            after start-up: the entries this run used are written back (atomically, like a
                      .pyc), only when something was compiled or something loaded went unused
    uninstall()       puts Python's own functions back and drops the tables

A code object is what ``compile`` makes of the text, keyed by the whole text, compiled with the
same flags as the ``exec``/``eval`` it replaces (no inherited ``__future__`` flags: neither module
has any), and run with the same globals and locals: the classes are the ones Python builds without
the cache. A regex program is the arguments ``re._compiler.compile`` gives the C matcher
(``_sre.compile``), made by the same steps; the pattern object built from them is equal to the one
re makes (the same pattern, flags and program). That part follows re's private internals, so it is
on only for the Python version it was written against (3.11). The file is validated against the
interpreter's version and cache tag and ignored when it does not match or cannot be read; nothing
is written when bytecode writing is off (``PYTHONDONTWRITEBYTECODE``) or the directory is not
writable. Standard library only: a service installs it before anything else is imported.
"""

from __future__ import annotations

import _sre
import builtins
import collections
import dataclasses
import marshal
import os
import sys
from re import _compiler as re_compiler  # type: ignore[attr-defined]  # re's private compiler, see re_program
from re import _parser as re_parser  # type: ignore[attr-defined]
from types import CodeType
from typing import Any

_FORMAT = 2
_HEADER = (_FORMAT, sys.version, sys.implementation.cache_tag)
MAX_ENTRIES = 4096  # per table: a process that keeps making new classes must not grow the file without bound
_MODULES = ((dataclasses, "exec"), (collections, "eval"))  # the code generators and the builtin each calls
_REGEX = sys.version_info[:2] == (3, 11)  # re_program() mirrors 3.11's re._compiler.compile
_DEBUG = 128  # re.DEBUG: prints while compiling, never cached (as re does not cache it)
_TABLES = ("exec", "eval", "regex")

RegexKey = tuple[str | bytes, int]
RegexProgram = tuple[int, list[int], int, dict[str, int], tuple[str | None, ...]]

_active: CodeCache | None = None
_python_compile_regex = re_compiler.compile


class CodeCache:
    """Source text -> code object and (pattern, flags) -> regex program, loaded from and saved to one file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.loaded: dict[str, dict[Any, Any]] = {name: {} for name in _TABLES}
        self.used: dict[str, dict[Any, Any]] = {name: {} for name in _TABLES}
        self.compiled = 0

    def load(self) -> int:
        """Read the file (nothing when missing, unreadable or made by another interpreter); the entry count."""
        try:
            with open(self.path, "rb") as handle:
                header, tables = marshal.loads(handle.read())
        except (OSError, ValueError, EOFError, TypeError):
            return 0
        if header != _HEADER or not isinstance(tables, dict):
            return 0
        for name, table in self.loaded.items():
            found = tables.get(name)
            if isinstance(found, dict):
                table.update((k, v) for k, v in found.items() if _valid(name, k, v))
        return sum(len(t) for t in self.loaded.values())

    def _remember(self, table: str, key: Any, value: Any) -> None:
        used = self.used[table]
        if len(used) < MAX_ENTRIES:
            used[key] = value

    def code(self, source: str, mode: str) -> CodeType:
        """The code object of ``source`` (``mode`` "exec" or "eval"): from the table, else compiled."""
        code: CodeType | None = self.used[mode].get(source)
        if code is None:
            code = self.loaded[mode].get(source)
            if code is None:
                # As exec()/eval() compile a string: "<string>", no flags inherited from this module.
                code = compile(source, "<string>", mode, dont_inherit=True)
                self.compiled += 1
            self._remember(mode, source, code)
        return code

    def regex(self, pattern: str | bytes, flags: int) -> RegexProgram:
        """The matcher program of a pattern: from the table, else made by re's parser and compiler."""
        key = (pattern, flags)
        program: RegexProgram | None = self.used["regex"].get(key)
        if program is None:
            program = self.loaded["regex"].get(key)
            if program is None:
                program = re_program(pattern, flags)
                self.compiled += 1
            self._remember("regex", key, program)
        return program

    @property
    def stale(self) -> bool:
        """Whether the file differs from what this run used (something compiled, or loaded but unused)."""
        return bool(self.compiled) or any(len(self.used[t]) != len(self.loaded[t]) for t in _TABLES)

    def save(self) -> bool:
        """Write the entries this run used, atomically; False when not written (bytecode writing off, or OSError)."""
        if sys.dont_write_bytecode:
            return False
        data = marshal.dumps((_HEADER, self.used))
        temporary = f"{self.path}.{os.getpid()}.tmp"
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            with open(temporary, "wb") as handle:
                handle.write(data)
            os.replace(temporary, self.path)
        except OSError:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            return False
        return True


def _valid(table: str, key: Any, value: Any) -> bool:
    """Whether a loaded entry has the shape its table holds."""
    if table != "regex":
        return type(key) is str and type(value) is CodeType
    return (type(key) is tuple and len(key) == 2 and type(key[0]) in (str, bytes) and type(key[1]) is int
            and type(value) is tuple and len(value) == 5)


def re_program(pattern: str | bytes, flags: int) -> RegexProgram:
    """``_sre.compile``'s arguments after the pattern, as Python 3.11's ``re._compiler.compile`` makes them."""
    parsed = re_parser.parse(pattern, flags)
    code = re_compiler._code(parsed, flags)
    groupindex = dict(parsed.state.groupdict)
    indexgroup: list[str | None] = [None] * parsed.state.groups
    for name, index in groupindex.items():
        indexgroup[index] = name
    # Plain ints: the opcodes are an int subclass, which marshal does not write.
    return (int(flags | parsed.state.flags), [int(c) for c in code], parsed.state.groups - 1, groupindex,
            tuple(indexgroup))


def cache_path(name: str) -> str:
    """The cache file of service ``name``: this package's ``__pycache__`` (or under ``PYTHONPYCACHEPREFIX``)."""
    here = os.path.dirname(os.path.abspath(__file__))
    folder = (os.path.join(sys.pycache_prefix, here.lstrip(os.sep)) if sys.pycache_prefix
              else os.path.join(here, "__pycache__"))
    return os.path.join(folder, f"classcode-{name}.{sys.implementation.cache_tag}.marshal")


def _exec(source: Any, globals: dict[str, Any] | None = None, locals: Any = None, /) -> None:
    """``exec`` for the code generators: a string's code comes from the cache."""
    if globals is None:  # as the builtin: the caller's namespace
        frame = sys._getframe(1)
        globals, locals = frame.f_globals, frame.f_locals if locals is None else locals
    cache = _active
    if cache is not None and type(source) is str:
        source = cache.code(source, "exec")
    builtins.exec(source, globals, locals)


def _eval(source: Any, globals: dict[str, Any] | None = None, locals: Any = None, /) -> Any:
    """``eval`` for the code generators: a string's code comes from the cache."""
    if globals is None:
        frame = sys._getframe(1)
        globals, locals = frame.f_globals, frame.f_locals if locals is None else locals
    cache = _active
    if cache is not None and type(source) is str:
        source = cache.code(source, "eval")
    return builtins.eval(source, globals, locals)


def _compile_regex(p: Any, flags: Any = 0) -> Any:
    """``re._compiler.compile`` with the program from the cache (a pattern string and plain int flags only)."""
    cache = _active
    if cache is None or type(p) not in (str, bytes) or type(flags) is not int or flags & _DEBUG:
        return _python_compile_regex(p, flags)
    return _sre.compile(p, *cache.regex(p, flags))


_REPLACEMENTS = {"exec": _exec, "eval": _eval}


def install(name: str, path: str | None = None) -> CodeCache | None:
    """Serve generated class code (and regex programs) from service ``name``'s cache file; None if one is
    installed already."""
    global _active
    if _active is not None or any(builtin in module.__dict__ for module, builtin in _MODULES):
        return None
    cache = CodeCache(path or cache_path(name))
    cache.load()
    _active = cache
    for module, builtin in _MODULES:
        setattr(module, builtin, _REPLACEMENTS[builtin])
    if _REGEX and re_compiler.compile is _python_compile_regex:
        re_compiler.compile = _compile_regex
    return cache


def active() -> CodeCache | None:
    """The installed cache, if any."""
    return _active


def uninstall() -> None:
    """Give the code generators and re Python's own functions back and drop the tables."""
    global _active
    for module, builtin in _MODULES:
        if module.__dict__.get(builtin) is _REPLACEMENTS[builtin]:
            delattr(module, builtin)
    if re_compiler.compile is _compile_regex:
        re_compiler.compile = _python_compile_regex
    _active = None


def save_and_uninstall() -> bool | None:
    """After start-up: write the cache if it is stale, then uninstall; True written, False not, None not needed."""
    cache = _active
    if cache is None:
        return None
    uninstall()
    return cache.save() if cache.stale else None
