"""Raft: the replicated ledger behind one small interface (see docs/consensus.md).

``Consensus``/``Committed`` are the interface; ``RaftEngine`` (pysyncobj, hardened) is
the engine and ``RaftTimers`` builds its timers; ``LocalHub`` (in
:mod:`consensus.testing`) is the in-memory network tests run engines on.  They are
imported lazily so that code which only needs the interface or the ledger's state
machine does not load pysyncobj and its process-wide patches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from consensus.interface import Committed, Consensus, MessageTransport

if TYPE_CHECKING:
    from consensus.engine import RaftEngine, RaftTimers
    from consensus.testing import LocalHub

__all__ = ["Committed", "Consensus", "LocalHub", "MessageTransport", "RaftEngine", "RaftTimers"]


def __getattr__(name: str) -> Any:
    if name in ("RaftEngine", "RaftTimers"):
        from consensus import engine

        return getattr(engine, name)
    if name == "LocalHub":
        from consensus import testing

        return testing.LocalHub
    raise AttributeError(f"module 'consensus' has no attribute {name!r}")
