"""Workspaces on the host: written safely, removed, and reaped after a ``kill -9``.

What a killed node left in its sandbox root is removed at the next start without waiting.

``kill -9`` skips every ``finally``: workspaces (``<root>/ws-<pid>-*``) and the runs'
cgroups stay behind (a 1.6 GB workspace once took the node two minutes to delete).
The candidates themselves are gone (bwrap ``--die-with-parent`` and the pid
namespace); what is left is removed here on a daemon thread, so a start never waits
for it.  A workspace's name carries the pid that made it: a live owner's is never
touched, and an older name without a pid is left alone for a minute.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
import uuid
from pathlib import Path, PurePosixPath

from evolution.errors import SandboxError
from runtime.cgroups import reap_stale_cgroups

_KINDS = ("ws-", "probe-", ".trash-", ".jail-etc-building-")
_LEGACY_AGE = 60.0


def _stale(path: Path, now: float) -> bool:
    """A workspace of a process that no longer exists (or an old one with no owner)."""
    name = path.name
    if name.startswith(".trash-"):
        return True
    parts = name.split("-")
    if len(parts) >= 3 and parts[1].isdigit():
        pid = int(parts[1])
        return pid != os.getpid() and not Path(f"/proc/{pid}").exists()
    try:
        return now - path.stat().st_mtime > _LEGACY_AGE
    except OSError:
        return False


def stale_workspaces(root: Path) -> list[Path]:
    """The leftovers under ``root`` that no live process owns."""
    now = time.time()
    try:
        entries = list(root.iterdir())
    except OSError:
        return []
    return [p for p in entries if p.name.startswith(_KINDS) and _stale(p, now)]


def _remove(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            for dirpath, _dirs, _files in os.walk(path):
                with contextlib.suppress(OSError):
                    os.chmod(dirpath, 0o700)
        shutil.rmtree(path, ignore_errors=True)
    with contextlib.suppress(OSError):
        reap_stale_cgroups()


def remove_tree(path: Path) -> None:
    """rmtree that survives a child's chmod 000 (root ignores modes; other users do not)."""
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return
    except OSError:
        for dirpath, _dirs, _files in os.walk(path):
            with contextlib.suppress(OSError):
                os.chmod(dirpath, 0o700)
        shutil.rmtree(path, ignore_errors=True)


def make_dirs(workdir: Path, folder: Path) -> None:
    """``folder`` and its parents below ``workdir``, each 0755 whatever the umask."""
    missing = []
    while folder != workdir and not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir()
        path.chmod(0o755)


def safe_relpath(rel: str) -> Path:
    """A tree path must stay inside the workspace: no absolute paths, no '..'."""
    path = PurePosixPath(rel)
    if not rel or path.is_absolute() or ".." in path.parts:
        raise SandboxError(
            f"refusing to write {rel!r} into a workspace", hint="tree paths must be relative"
        )
    return Path(*path.parts)


def reap_in_background(root: Path) -> threading.Thread:
    """Rename the stale workspaces aside (O(1) each), delete them and stale cgroups on a thread."""
    moved: list[Path] = []
    for path in stale_workspaces(root):
        if path.name.startswith(".trash-"):
            moved.append(path)
            continue
        target = root / f".trash-{uuid.uuid4().hex}"
        with contextlib.suppress(OSError):
            path.rename(target)
            moved.append(target)
    thread = threading.Thread(
        target=_remove, args=(moved,), name="tars-sandbox-reaper", daemon=True
    )
    thread.start()
    return thread


__all__ = [
    "make_dirs",
    "reap_in_background",
    "remove_tree",
    "safe_relpath",
    "stale_workspaces",
]
