"""Runs inside the jail, the last step before the instruction counter: the counted run
becomes one process that can start no other, so valgrind's count is the benchmark's.

Why: valgrind counts the process it was started on and prints its figure when that
process exits.  A benchmark that ``exec``s another program leaves the counter behind:
no figure is printed, and the new program may print a forged one (``I refs: 1,000`` on
stderr was read as the count).  One that forks can do its work in the child and exit
from a parent whose count is the start-up alone.  Both are a candidate's way to a gain
it did not make, so both are refused by the kernel here: a seccomp filter, installed
just before this helper ``execve``s valgrind's tool, that

* kills the process on any later ``execve`` (the one allowed is ours: its path is a
  buffer at an address only this process knows, compared by the filter) or ``execveat``;
* answers ``EPERM`` to ``fork``, ``vfork`` and a ``clone`` that makes a process rather
  than a thread (no ``CLONE_THREAD``), ``ENOSYS`` to ``clone3`` (its flags are out of a
  filter's reach; C libraries fall back to ``clone``);
* answers ``EPERM`` to ``ptrace`` and ``process_vm_writev`` (nothing a benchmark needs,
  and ways to reach the counter's memory).

The filter is built with libseccomp (``pyseccomp``), which also kills any syscall made
through another architecture's entry (x32, i386).  It lasts across the ``execve`` and
cannot be lifted.  Started with ``python -I`` (the candidate's files are not on the path),
before any candidate code runs.

Usage: ``python -I _count_guard.py TOOL ARGS...`` where TOOL is valgrind's tool binary
(``cachegrind-amd64-linux``), run directly rather than through the ``valgrind`` launcher,
which would need two more ``execve``s.  A failure to install the filter exits 125 with
the reason: a count never runs unguarded.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys

#: a ``clone`` without it makes a process
CLONE_THREAD = 0x00010000
#: the exit status when the guard cannot be set up (as the jail's own set-up failures)
SETUP_FAILED = 125


def _libseccomp() -> str:
    """libseccomp's path: ``pyseccomp`` asks ``ctypes.util.find_library``, which needs
    ``ldconfig`` or a compiler, and a slim image (the node container) has neither; so
    where it finds nothing, the usual places are tried with ``dlopen`` itself."""
    import ctypes.util

    found = ctypes.util.find_library("seccomp")
    if found:
        return found
    triplet = f"{os.uname().machine}-linux-gnu"
    for path in ("libseccomp.so.2", f"/usr/lib/{triplet}/libseccomp.so.2",
                 f"/lib/{triplet}/libseccomp.so.2", "/usr/lib64/libseccomp.so.2",
                 "/usr/lib/libseccomp.so.2"):  # fmt: skip
        try:
            ctypes.CDLL(path)
        except OSError:
            continue
        return path
    raise OSError("libseccomp.so.2 was not found: install libseccomp2")


def _install(allowed: int) -> None:
    """The filter described above; ``allowed`` is the address of the one path to exec."""
    import ctypes.util

    library, lookup = _libseccomp(), ctypes.util.find_library
    ctypes.util.find_library = lambda name: library if name == "seccomp" else lookup(name)
    try:
        import pyseccomp as seccomp
    finally:
        ctypes.util.find_library = lookup

    rules = seccomp.SyscallFilter(seccomp.ALLOW)
    rules.add_rule(seccomp.KILL_PROCESS, "execve", seccomp.Arg(0, seccomp.NE, allowed))
    rules.add_rule(seccomp.KILL_PROCESS, "execveat")
    refused = seccomp.ERRNO(errno.EPERM)
    for name in ("fork", "vfork", "ptrace", "process_vm_writev"):
        try:
            rules.add_rule(refused, name)
        except (OSError, ValueError):  # not a syscall of this architecture (aarch64: fork)
            continue
    rules.add_rule(refused, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, CLONE_THREAD, 0))
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    rules.load()


def main(argv: list[str]) -> int:
    """Install the filter, then become ``argv`` (valgrind's tool); returns only on failure.

    Every buffer the ``execve`` reads is built before the filter is loaded: once it is,
    nothing may fork (``ctypes.util.find_library`` runs ``ldconfig``) or exec but this."""
    if not argv:
        print("tars-count-guard: no command", file=sys.stderr)
        return SETUP_FAILED
    args = [os.fsencode(a) for a in argv]
    path = ctypes.create_string_buffer(args[0])
    c_argv = (ctypes.c_char_p * (len(args) + 1))(*args, None)
    env = [os.fsencode(k) + b"=" + os.fsencode(v) for k, v in os.environ.items()]
    c_env = (ctypes.c_char_p * (len(env) + 1))(*env, None)
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        _install(ctypes.addressof(path))
    except Exception as exc:  # noqa: BLE001 (any reason: the count must not run unguarded)
        print(f"tars-count-guard: cannot install the seccomp filter: {exc}", file=sys.stderr)
        return SETUP_FAILED
    libc.execve(path, c_argv, c_env)
    print(
        f"tars-count-guard: cannot run {argv[0]}: {os.strerror(ctypes.get_errno())}",
        file=sys.stderr,
    )
    return SETUP_FAILED


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
