"""One version's modules, imported in isolation from every other version in the process.

Hot reload keeps two versions of the same package names (``counter``, ``logstats``…) in
one interpreter at once, so neither may live in ``sys.modules``: ``importlib.reload``
rebinds one module object in place and leaves every ``from m import x`` binding on the
old code (docs/hot-reload.md). Here each version gets its own module objects instead:

- a version's modules are found with :class:`importlib.machinery.FileFinder` on the
  version's own folder only, created with :func:`importlib.util.module_from_spec` and
  executed by their loader, and kept in this version's own map (never ``sys.modules``);
- each of them gets a ``__builtins__`` of its own whose ``__import__`` resolves the
  names the version's folder holds inside this map, so ``import counter.store``,
  ``from counter.version import tag`` and ``from . import store`` bind this version's
  objects, at import time and in function bodies at call time alike; any other name
  (the standard library, installed packages) goes to the interpreter's import as usual.

Functions resolve their globals in their own module's dict, so a v1 function keeps
calling v1's helpers after v2 is loaded, and a v2 function calls v2's.

``sys.modules`` still matters to code that looks a module up by name (``dataclasses`` and
``typing.get_type_hints`` with string annotations, ``enum``, ``inspect``). So a module
being executed is in ``sys.modules`` under its own name while it runs (the previous entry
is put back after, under a process-wide lock), and the version that serves is
*published* there (``publish``) so that such lookups at call time find the current
code; an old version's code that asks ``sys.modules`` by name sees the current one.

What a version's own ``genome.toml`` says its service code is (``read_hooks``) is read
here too. A worker runs this module and ``slots.py`` in its jail, where only
``runtime/service/`` is copied: both import the standard library alone, and
``ServiceError`` is ``evolution.errors``' when it can be imported, else a stand-in of the
same name and text.
"""

from __future__ import annotations

import builtins
import importlib.machinery
import importlib.util
import sys
import threading
import tomllib
import types
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

try:
    from evolution.errors import ServiceError
except ImportError:  # in a worker's jail, where only runtime/service/ is copied (docs/service.md)

    class ServiceError(Exception):  # type: ignore[no-redef]
        """The jail's stand-in for ``evolution.errors.ServiceError``: same name, same text."""

        def __init__(self, message: str, *, hint: str | None = None) -> None:
            super().__init__(message)
            self.message, self.hint = message, hint

        def __str__(self) -> str:
            return f"{self.message} — {self.hint}" if self.hint else self.message


#: source and bytecode only: a C extension cannot be loaded twice under one name
_LOADERS = (
    (importlib.machinery.SourceFileLoader, importlib.machinery.SOURCE_SUFFIXES),
    (importlib.machinery.SourcelessFileLoader, importlib.machinery.BYTECODE_SUFFIXES),
)
_IMPORT = builtins.__import__
#: guards this module's writes to ``sys.modules`` (process-wide, like the names it touches)
_PUBLISH = threading.RLock()


def top_level_names(root: Path) -> frozenset[str]:
    """The importable names at a version's root: packages (with ``__init__.py``) and modules.

    These are the names the version owns, exactly those that putting ``root`` first on
    ``sys.path`` would shadow.
    """
    names: set[str] = set()
    for entry in root.iterdir():
        if entry.is_dir() and (entry / "__init__.py").is_file() and entry.name.isidentifier():
            names.add(entry.name)
        elif entry.is_file() and entry.suffix == ".py" and entry.stem.isidentifier():
            names.add(entry.stem)
    return frozenset(names)


class IsolatedModules:
    """The module objects of one version's tree, imported on demand, thread-safe."""

    def __init__(self, version: str, root: Path) -> None:
        self.version = version
        self.root = root
        self.names = top_level_names(root)
        self._modules: dict[str, types.ModuleType] = {}
        self._ready: set[str] = set()
        #: one import at a time per version (Python's own import locks are per module;
        #: a version imports a handful of modules, once)
        self._lock = threading.RLock()
        self._finders: dict[str, importlib.machinery.FileFinder] = {}
        self._builtins: dict[str, Any] = dict(builtins.__dict__)
        self._builtins["__import__"] = self._import
        self._published = False

    def owns(self, name: str) -> bool:
        """Whether a dotted module name belongs to this version's tree."""
        return name.partition(".")[0] in self.names

    def loaded(self) -> tuple[str, ...]:
        """The names of the modules imported so far (for status and tests)."""
        return tuple(sorted(self._ready))

    def module(self, name: str) -> types.ModuleType:
        """Import ``name`` (absolute, dotted) inside this version and return its module."""
        found = self._modules.get(name)
        if found is not None and name in self._ready:
            return found
        with self._lock:
            return self._load(name)

    def publish(self, previous: IsolatedModules | None) -> None:
        """Put this version's modules in ``sys.modules`` in place of ``previous``'s."""
        with _PUBLISH:
            if previous is not None:
                previous.unpublish()
            self._published = True
            for name in self._ready:
                sys.modules[name] = self._modules[name]

    def unpublish(self) -> None:
        """Take this version's modules out of ``sys.modules`` (others' entries stay)."""
        with _PUBLISH:
            self._published = False
            for name, module in self._modules.items():
                if sys.modules.get(name) is module:
                    del sys.modules[name]

    def drop(self) -> None:
        """Forget every module (the purge): objects still referenced elsewhere live on."""
        with self._lock:
            self.unpublish()
            self._modules.clear()
            self._ready.clear()
            self._finders.clear()

    def _load(self, name: str) -> types.ModuleType:
        found = self._modules.get(name)
        if found is not None:
            # ready, or being executed by this thread: a circular import sees it partial,
            # as Python's own import does
            return found
        parent, _, child = name.rpartition(".")
        if parent:
            package = self._load(parent)
            search = getattr(package, "__path__", None)
            if search is None:
                raise ModuleNotFoundError(
                    f"No module named {name!r}; {parent!r} is not a package", name=name
                )
            if name in self._modules:  # the parent imported it while running
                return self._modules[name]
        else:
            search = [str(self.root)]
        spec = self._find(name, search)
        if spec is None:
            raise ModuleNotFoundError(
                f"No module named {name!r} in version {self.version}", name=name
            )
        module = self._create(spec)
        self._modules[name] = module
        with _PUBLISH:
            previous = sys.modules.get(name)
            sys.modules[name] = module  # by name, for dataclasses and the like, while it runs
            keep = False
            try:
                if spec.loader is not None:
                    spec.loader.exec_module(module)
                keep = self._published
            except BaseException:
                del self._modules[name]
                raise
            finally:
                if not keep and sys.modules.get(name) is module:
                    if previous is None:
                        del sys.modules[name]
                    else:
                        sys.modules[name] = previous
        self._ready.add(name)
        if parent:
            setattr(self._modules[parent], child, module)
        return module

    def _find(self, name: str, search: Iterable[str]) -> importlib.machinery.ModuleSpec | None:
        portions: list[str] = []
        for entry in search:
            finder = self._finders.get(entry)
            if finder is None:
                finder = importlib.machinery.FileFinder(entry, *_LOADERS)
                self._finders[entry] = finder
            spec = finder.find_spec(name)
            if spec is None:
                continue
            if spec.loader is not None:
                return spec
            portions.extend(spec.submodule_search_locations or ())  # a namespace portion
        if not portions:
            return None
        spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
        spec.submodule_search_locations = portions
        return spec

    def _create(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        if spec.loader is None:  # a namespace package (a folder without __init__.py)
            module = types.ModuleType(spec.name)
            module.__path__ = list(spec.submodule_search_locations or ())
            module.__spec__ = spec
            module.__package__ = spec.name
        else:
            module = importlib.util.module_from_spec(spec)
        module.__dict__["__builtins__"] = self._builtins
        return module

    def _import(
        self,
        name: str,
        globals: Mapping[str, Any] | None = None,
        locals: Mapping[str, Any] | None = None,
        fromlist: Sequence[str] | None = (),
        level: int = 0,
    ) -> types.ModuleType:
        """``__import__`` for this version's modules: its own names here, others as usual."""
        absolute = name
        if level > 0:
            package = (globals or {}).get("__package__")
            if not package:
                raise ImportError("attempted relative import with no known parent package")
            absolute = importlib.util.resolve_name("." * level + name, package)
        if not self.owns(absolute):
            return _IMPORT(name, globals, locals, fromlist or (), level)
        module = self.module(absolute)
        if not fromlist:
            if level == 0:
                return self.module(absolute.partition(".")[0])
            if not name:
                return module
            cut = len(name) - len(name.partition(".")[0])
            return self.module(absolute[: len(absolute) - cut])
        if hasattr(module, "__path__"):
            self._fromlist(module, fromlist)
        return module

    def _fromlist(
        self, package: types.ModuleType, fromlist: Iterable[str], star: bool = False
    ) -> None:
        """``from package import a, b``: import those that are submodules, as Python does."""
        for item in fromlist:
            if item == "*":
                if not star and hasattr(package, "__all__"):
                    self._fromlist(package, package.__all__, star=True)
            elif not hasattr(package, item):
                sub = f"{package.__name__}.{item}"
                try:
                    self.module(sub)
                except ModuleNotFoundError as exc:
                    if exc.name != sub:
                        raise
                    # not a submodule either: the ``from`` statement raises ImportError


Target = tuple[str, str]


class Hooks(NamedTuple):
    """What one version's ``genome.toml`` says about its service code."""

    state: Target | None
    code_change: Target | None
    functions: tuple[Target, ...]


def parse_target(text: str, where: str) -> Target:
    """``"pkg.module:function"`` -> ``("pkg.module", "function")``, or a ServiceError."""
    module, sep, function = text.partition(":")
    parts = module.split(".")
    if not sep or not function.isidentifier() or not all(p.isidentifier() for p in parts):
        raise ServiceError(
            f"{where}: {text!r} is not a 'module:function' target",
            hint='write it as "package.module:function", e.g. "counter.store:initial"',
        )
    return module, function


def read_hooks(root: Path) -> Hooks:
    """The ``[service]`` hooks of the version at ``root`` (none when it has no genome.toml)."""
    path = root / "genome.toml"
    if not path.is_file():
        return Hooks(None, None, ())
    try:
        service = tomllib.loads(path.read_text(encoding="utf-8")).get("service", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ServiceError(
            f"cannot read {path}: {exc}",
            hint="fix the version's genome.toml; the current version keeps serving",
        ) from exc
    state, change = service.get("state") or "", service.get("code_change") or ""
    functions = service.get("functions") or {}
    if not isinstance(functions, dict):
        raise ServiceError(
            f"{path}: [service.functions] is not a table", hint="see docs/genome-format.md"
        )
    calls = [
        (f"{path} [service.functions.{n}]", (t or {}).get("call", "")) for n, t in functions.items()
    ]
    return Hooks(
        parse_target(str(state), f"{path} [service] state") if state else None,
        parse_target(str(change), f"{path} [service] code_change") if change else None,
        tuple(parse_target(str(call), where) for where, call in calls),
    )
