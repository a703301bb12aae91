"""A receiving node in its own process, for the attack tests of tests/test_bounds.py.

Run as ``python tests/bounds_node.py`` with a JSON object on stdin (its node id,
endpoint, key pair, peers, the probe client's key and Transport settings).  It starts a
real :class:`Transport`, subscribes ``actor.tell`` (counting what it delivers, in order),
serves ``probe`` to the client (its stats, what it delivered, and its resident memory
from /proc) and prints ``ready``; it stops when stdin closes.  Its memory is the node's
own: nothing of the test process is counted in it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtime.transport import Frame, Peer, Transport  # noqa: E402


def memory() -> dict[str, int]:
    """VmRSS (now) and VmHWM (the peak since start) of this process, in bytes."""
    figures = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            figures[name] = int(value.split()[0]) * 1024
    return figures


def main() -> None:
    spec = json.loads(sys.stdin.readline())
    peers = [Peer(*p) for p in spec["peers"]]
    transport = Transport(
        spec["id"],
        spec["endpoint"],
        spec["public"],
        spec["secret"],
        peers,
        clients={"probe": spec["probe"]},
        **spec.get("settings", {}),
    )
    delivered: list[int] = []

    def tell(frame: Frame) -> None:
        body: Any = frame.body
        delivered.append(len(body) if isinstance(body, bytes) else -1)

    def probe(sender: str, body: Any) -> dict[str, Any]:
        return {"stats": transport.stats(), "delivered": delivered[:], **memory()}

    transport.subscribe("actor.tell", tell)
    transport.serve("probe", probe)
    with transport:
        print("ready", flush=True)
        sys.stdin.read()  # until the test closes it


if __name__ == "__main__":
    main()
