"""Free TCP ports on 127.0.0.1, for the demo's swarm, the tests and the benchmarks.

A port the kernel just handed out is free now and unlikely to be taken a second later;
that is the best a process can know without holding the socket open, which would stop
the node it is for from binding it.
"""

from __future__ import annotations

import socket

__all__ = ["free_port", "free_ports"]


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports, all bound at once so the kernel cannot repeat one."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port() -> int:
    """One free port (see :func:`free_ports`)."""
    return free_ports(1)[0]
