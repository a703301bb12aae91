"""What a candidate sees: the bwrap command line of the full jail.

A candidate's code is untrusted input (issue 9): with ``--ro-bind / /`` a genome's test
read every node's CurveZMQ secret key and SQLite store.  So the jail starts from an
empty root and adds only what a program needs to run:

* its workdir, writable, on a tmpfs of ``disk_bytes`` that also holds ``/tmp`` and
  ``/dev/shm`` (one quota for every byte the run can write, charged to its memory
  cgroup, gone with the mount namespace: nothing to delete on the host);
* the prepared tree read-only at :data:`SOURCE`, copied into the workdir before the
  command runs (``cp -R``, as the candidate's own user);
* ``/usr`` and the ``/bin``, ``/sbin``, ``/lib*`` the distribution has, the
  interpreter's real prefix and the node's venv (``sys.prefix``, never the project
  folder that holds ``.tars/``), all read-only; the profiler helper as one file;
* a few ``/etc`` files (:data:`ETC_NAMES`) and a passwd/group that know only root and
  nobody (never shadow); a fresh ``/proc`` and a minimal ``/dev``; no ``/sys``.

It runs as uid/gid 65534 with no capabilities and no new privileges (as root, bwrap
keeps CAP_SETUID/CAP_SETGID/CAP_SETPCAP only for ``setpriv`` to drop to nobody; as an
ordinary user a user namespace maps nobody), in its own pid, ipc, net and uts
namespaces, and dies with its parent.  No cgroup namespace: bwrap starts in the run's
groups (from a starter waiting there, :mod:`runtime.sandbox_starter`) or is moved into
them after it has made its namespaces, so one would not hide anything; there is no
cgroupfs in the jail.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import sys
import uuid
from collections.abc import Iterable
from pathlib import Path

#: Where the workdir appears inside the jail, whatever its path on the host: a run must
#: not depend on where the node keeps its state (an instruction count moved by up to
#: 0.75 % with the length of that path).
INSIDE = Path("/tmp/tars-ws")
#: the prepared tree, read-only; copied into INSIDE before the command runs
SOURCE = "/.tars-src"
#: the profiler's helper (``runtime/_sandbox_child.py``), bound alone
HELPER_INSIDE = "/opt/tars/_sandbox_child.py"
#: ``/dev/shm`` points here, inside the one quota
SHM = "/tmp/.tars-shm"
NOBODY = 65534
#: /etc entries a program may need; anything else of the host's /etc stays out
ETC_NAMES = (
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime", "timezone",
    "nsswitch.conf", "host.conf", "hosts", "gai.conf", "protocols", "services",
    "os-release", "debian_version", "mime.types", "locale.alias",
)  # fmt: skip
_DEVICES = ("null", "zero", "random", "urandom")
#: ``sh -c COPY SOURCE WATCH_FD command…``: the tree into the workdir; then, unless WATCH_FD
#: is ``-``, a watchdog that kills every process of the run once the node's end of that
#: pipe closes (the node died); then the command
_COPY = (
    "src=$0; fd=$1; shift; "
    'cp -R "$src"/. . || { echo "tars-sandbox: cannot copy the workdir" >&2; exit 125; }; '
    'if [ "$fd" != - ]; then '
    'eval "{ while read -r _; do :; done <&$fd; kill -KILL -1; } >/dev/null 2>&1 &"; '
    'eval "exec $fd<&-"; fi; '
    'exec "$@"'
)
#: stands for the watch pipe's fd in a command line until the pipe exists
WATCH_ARG = "fd:WATCH"
_PASSWD = "root:x:0:0:root:/nonexistent:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/tmp/tars-ws:/usr/sbin/nologin\n"
_GROUP = "root:x:0:\nnogroup:x:65534:\n"


def write_etc(root: Path) -> Path:
    """The jail's /etc, built once per content under ``root``: bound as one folder.

    One bind instead of one per file: bwrap reads the mount table again for every
    read-only bind, so each bind costs more the more there are (measured: the /etc
    files alone added 4-7 ms a run).  The folder holds copies of :data:`ETC_NAMES`
    (symlinks kept as symlinks) and a passwd/group that know only root and nobody; its
    name is a digest of that content, so a changed host (a new ld.so.cache) gets a new
    folder and a run never sees one half-written.
    """
    entries: list[tuple[str, str, bytes]] = [("passwd", "file", _PASSWD.encode()),
                                              ("group", "file", _GROUP.encode())]  # fmt: skip
    for name in ETC_NAMES:
        host = Path("/etc") / name
        if host.is_symlink():
            entries.append((name, "link", os.readlink(host).encode()))
        elif host.is_file():
            entries.append((name, "file", host.read_bytes()))
        elif host.is_dir():
            for child in sorted(host.iterdir()):
                rel = f"{name}/{child.name}"
                if child.is_symlink():
                    entries.append((rel, "link", os.readlink(child).encode()))
                elif child.is_file():
                    entries.append((rel, "file", child.read_bytes()))
    digest = hashlib.blake2b(repr(entries).encode(), digest_size=8).hexdigest()
    folder = root / f".jail-etc-{digest}"
    if folder.is_dir():
        return folder
    building = root / f".jail-etc-building-{uuid.uuid4().hex}"
    building.mkdir(parents=True)
    for rel, kind, data in entries:
        target = building / rel
        target.parent.mkdir(exist_ok=True)
        target.parent.chmod(0o755)
        if kind == "link":
            target.symlink_to(data.decode())
        else:
            target.write_bytes(data)
            target.chmod(0o644)
    building.chmod(0o755)
    try:
        building.rename(folder)
    except OSError:  # another sandbox made the same folder first
        shutil.rmtree(building, ignore_errors=True)
    return folder


def interpreter_paths() -> list[str]:
    """The folders the node's Python needs: venv, real prefix, the executable's folder.

    Paths under ``/usr`` come with ``/usr``; each is given both as written and as its
    real path, so a venv whose ``bin/python`` links into ``/root/.pyenv`` works.
    """
    wanted = {
        sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix,
        os.path.dirname(os.path.realpath(sys.executable)),
    }  # fmt: skip
    paths: set[str] = set()
    for path in wanted:
        for candidate in (os.path.abspath(path), os.path.realpath(path)):
            if candidate in ("/", "/usr") or candidate.startswith("/usr/"):
                continue
            if os.path.isdir(candidate):
                paths.add(candidate)
    kept = sorted(paths)
    return [p for p in kept if not any(p != q and p.startswith(q + "/") for q in kept)]


class _Args:
    """bwrap arguments, making each bind's missing parents world-traversable (0755).

    bwrap makes a bind's missing parents 0700 and owned by root, which nobody cannot
    cross; ``--perms 0755 --dir`` before each bind fixes that.
    """

    def __init__(self, bwrap: str) -> None:
        self.argv = [bwrap]
        self.made: set[str] = {"/"}

    def parents(self, dest: str) -> None:
        parts = Path(dest).parent.parts
        for depth in range(2, len(parts) + 1):
            folder = str(Path(*parts[:depth]))
            if folder not in self.made:
                self.argv += ["--perms", "0755", "--dir", folder]
                self.made.add(folder)

    def add(self, op: str, source: str, dest: str) -> None:
        self.parents(dest)
        self.argv += [op, source, dest]
        self.made.add(dest)


def _system(args: _Args) -> None:
    """/usr, /bin, /sbin, /lib*: bound read-only, or symlinked where the host merges them."""
    args.add("--ro-bind", "/usr", "/usr")
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = f"/{name}"
        if os.path.islink(host):
            args.argv += ["--symlink", os.readlink(host), host]
        elif os.path.isdir(host):
            args.add("--ro-bind", host, host)


def _etc(args: _Args, etc_dir: Path | None) -> None:
    """The prepared /etc (:func:`write_etc`), or an empty one."""
    if etc_dir is None:
        args.argv += ["--perms", "0755", "--dir", "/etc"]
    else:
        args.argv += ["--ro-bind", str(etc_dir), "/etc"]
    args.made.add("/etc")


def _dev(args: _Args) -> None:
    """The devices a program uses, ``/dev/fd`` and friends; ``/dev/shm`` into the quota."""
    args.argv += ["--perms", "0755", "--dir", "/dev"]
    args.made.add("/dev")
    for name in _DEVICES:
        if os.path.exists(f"/dev/{name}"):
            args.argv += ["--dev-bind", f"/dev/{name}", f"/dev/{name}"]
    args.argv += ["--symlink", "/proc/self/fd", "/dev/fd"]
    for number, name in enumerate(("stdin", "stdout", "stderr")):
        args.argv += ["--symlink", f"/proc/self/fd/{number}", f"/dev/{name}"]
    args.argv += ["--symlink", SHM, "/dev/shm"]


def bwrap_args(
    bwrap: str,
    source: Path,
    disk_bytes: int,
    *,
    setpriv: str | None = None,
    etc_dir: Path | None = None,
    helper: Path | None = None,
    extra_ro: Iterable[str] = (),
    watch: bool = False,
) -> list[str]:
    """The jail prefix: put the command after it.  ``source`` is the prepared tree.

    ``setpriv`` (as root) drops to nobody inside; without it (an ordinary user) a user
    namespace maps nobody.  The tmpfs comes before any bind under /tmp, so a node
    installed under /tmp (a CI clone) still finds its Python.  Everything but the
    source is the same run after run, so it is built once (about 1 ms of pathlib).
    """
    ro = (*interpreter_paths(), *extra_ro)
    head = _head(bwrap, disk_bytes, setpriv, etc_dir, helper, ro)
    return [*head, "--ro-bind", str(source), SOURCE, *_tail(setpriv), *copy_in(watch)]


@functools.lru_cache(maxsize=32)
def _head(
    bwrap: str,
    disk_bytes: int,
    setpriv: str | None,
    etc_dir: Path | None,
    helper: Path | None,
    ro: tuple[str, ...],
) -> tuple[str, ...]:
    args = _Args(bwrap)
    _system(args)
    args.argv += ["--proc", "/proc"]
    args.made.add("/proc")
    args.argv += ["--size", str(disk_bytes), "--perms", "1777", "--tmpfs", "/tmp"]
    args.made.add("/tmp")
    args.argv += ["--perms", "0777", "--dir", str(INSIDE), "--perms", "1777", "--dir", SHM]
    args.made |= {str(INSIDE), SHM}
    _dev(args)
    _etc(args, etc_dir)
    for path in ro:
        args.add("--ro-bind", path, path)
    if helper is not None:
        args.add("--ro-bind", str(helper), HELPER_INSIDE)
    return tuple(args.argv)


def _tail(setpriv: str | None) -> list[str]:
    tail = [
        "--chdir", str(INSIDE),
        "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
        "--hostname", "tars-sandbox",
        "--die-with-parent", "--new-session",
    ]  # fmt: skip
    if setpriv is not None:
        tail += ["--cap-drop", "ALL"]
        for cap in ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP"):
            tail += ["--cap-add", cap]
        tail += ["--", *drop_privileges(setpriv)]
    else:
        uid = str(NOBODY)
        tail += ["--unshare-user", "--uid", uid, "--gid", uid, "--cap-drop", "ALL", "--"]
    return tail


def drop_privileges(setpriv: str) -> list[str]:
    """From bwrap's root to nobody: no groups, no capabilities (bounding set too), no new privileges."""
    uid = str(NOBODY)
    return [
        setpriv, "--reuid", uid, "--regid", uid, "--clear-groups",
        "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
    ]  # fmt: skip


def copy_in(watch: bool = False) -> list[str]:
    """``sh -c 'cp -R SOURCE/. . && exec "$@"'``: the tree into the workdir, then the command.

    ``watch``: also start the watchdog on the pipe :data:`WATCH_ARG` names.  bwrap's
    ``--die-with-parent`` has a gap: its pid-1 init sets its death signal only after it
    has forked the command, so a node killed in those first milliseconds left an init
    and the candidate running (seen in ``tests/test_jail.py``).  The watchdog closes it:
    the node's end of the pipe closes whenever the node dies.
    """
    return ["/bin/sh", "-c", _COPY, SOURCE, WATCH_ARG if watch else "-"]


__all__ = [
    "ETC_NAMES",
    "HELPER_INSIDE",
    "INSIDE",
    "NOBODY",
    "SHM",
    "SOURCE",
    "WATCH_ARG",
    "bwrap_args",
    "interpreter_paths",
    "write_etc",
]
