"""The plain code loader of a worker: one version of a genome's tree, imported by path.

Runs inside the worker process (in the jail), so it imports only the standard library:
the worker's files are copied into the jail as they are (docs/service.md, "Processes").
``load`` puts the version's root first on ``sys.path`` and forgets every module the
previous version imported from its root, so the next call imports the new code; a call
already running keeps the function object it resolved, so it finishes on the code it
started with. Resolved functions are cached per version: the hot path is one dict
lookup.  Hot reload with two versions side by side is ``slots.VersionSlots``.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["LoadedCode"]


class LoadedCode:
    """One version of a genome's code; thread-safe ``call``; ``load`` switches versions."""

    def __init__(self) -> None:
        self.version: str | None = None
        self.root: Path | None = None
        self._lock = threading.Lock()
        self._functions: dict[tuple[str, str], Callable[..., Any]] = {}

    def load(self, version: str, root: Path) -> None:
        """Serve ``version`` from ``root`` from now on (modules of the old root forgotten)."""
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"version {version}: no folder {root}")
        with self._lock:
            old = self.root
            if old is not None:
                prefix = str(old) + os.sep
                for name, module in list(sys.modules.items()):
                    where = getattr(module, "__file__", None) or ""
                    if where.startswith(prefix):
                        del sys.modules[name]
                if str(old) in sys.path:
                    sys.path.remove(str(old))
            sys.path.insert(0, str(root))
            importlib.invalidate_caches()
            self.version, self.root = version, root
            self._functions = {}

    def call(self, module: str, function: str, kwargs: dict[str, Any]) -> Any:
        """Run ``module:function(**kwargs)`` of the loaded version."""
        found = self._functions.get((module, function))
        if found is None:
            found = self._resolve(module, function)
        return found(**kwargs)

    def _resolve(self, module: str, function: str) -> Callable[..., Any]:
        with self._lock:
            if self.root is None:
                raise RuntimeError("no version loaded")
            target = getattr(importlib.import_module(module), function, None)
            if not callable(target):
                raise AttributeError(f"{module} has no function {function!r}")
            self._functions[(module, function)] = target
            return target
