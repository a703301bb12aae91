"""Membership changes: the log command that carries them, and a leader's hand-over first.

pysyncobj changes membership through a command in the log, ``[kind, node_id]`` pickled
(protocol 2) after the membership type byte; it is read back only with the restricted
unpickler.  pysyncobj cannot remove the current leader, so a leader removing itself
first hands leadership to an up-to-date follower (:func:`hand_over`).
"""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Callable

from consensus.wire import _MEMBERSHIP, safe_loads
from evolution.errors import NotCommittedError


def command(kind: str, node_id: str) -> bytes:
    """The log command that adds (``"add"``) or removes (``"rem"``) ``node_id``."""
    return bytes([_MEMBERSHIP]) + pickle.dumps([kind, node_id], protocol=2)


def parse(command: bytes) -> tuple[str, str] | None:
    """``(kind, node_id)`` of a membership command, or None if it does not read."""
    try:
        kind, node_id = safe_loads(command[1:])
    except Exception:
        return None
    return kind, node_id


def hand_over(
    node_id: str,
    transfer: Callable[[threading.Event], None],
    leader: Callable[[], str | None],
    *,
    deadline: float,
    settle: float,
    poll: float,
) -> None:
    """Ask for leadership transfers until another node leads, or raise at ``deadline``.

    ``transfer(done)`` starts one (``done`` is set when the core answered); after each,
    the new leader has ``settle`` seconds (an election timeout) to show up in ``leader()``.
    """
    while time.monotonic() < deadline:
        done = threading.Event()
        transfer(done)
        done.wait(max(0.0, deadline - time.monotonic()))
        settle_until = time.monotonic() + settle
        while time.monotonic() < min(settle_until, deadline):
            current = leader()
            if current is not None and current != node_id:
                return
            time.sleep(poll)
    raise NotCommittedError(
        f"leader {node_id} could not hand leadership over before removing itself",
        hint="no follower is up to date and reachable; retry when the others catch up",
    )
