"""Bulk transfer of the ledger's state to a node the compacted log cannot catch up.

Raft entries before a leader's snapshot are gone, so a node behind it (down for long,
joining with an empty store, or whose store was deleted) fetches the *stored events*
from a peer instead of replaying entries.  Stores agree per lineage (same positions,
bytes and hash chain on every node) but not in the order lineages interleave, so the
transfer is per lineage: "lineage X after position P, up to Q".

The protocol is pull, over the transport's request/reply channel ``"bulk"``: every
chunk is asked for by position, so a lost or late reply is simply asked for again, and
the receiver never holds more than it asked for (flow control and acknowledgement in
one).  ``begin`` reads the peer's applied index, positions and member list under the
ledger's lock, i.e. at one point of the log; events at or below those positions never
change, so the chunks that follow need no lock and no session on the peer.

Nothing is stored until every event has arrived; the store then checks positions,
topics and the hash chain of the whole batch and writes it with the applied index in
one transaction (:meth:`events.store.GenomeStore.import_events`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

from consensus.ledger import LedgerState
from evolution.errors import ConsensusError, TarsError

logger = logging.getLogger(__name__)

CHANNEL = "bulk"
#: Bytes of event state per reply: well under the transport's 8 MiB frame.
CHUNK_BYTES = 1 << 20
#: Seconds a peer may take to answer one request.
REQUEST_TIMEOUT = 15.0


class Requester(Protocol):
    def request(self, peer: str, channel: str, body: Any, timeout: float = 5.0) -> Any: ...


class Fetched(NamedTuple):
    peer: str
    index: int  # type: ignore[assignment]  # shadows tuple.index on purpose
    events: int
    size: int
    seconds: float


def serve(state: LedgerState) -> Callable[[str, Any], Any]:
    """The ``"bulk"`` request handler of a node whose ledger is ``state``."""

    def handle(sender: str, body: Any) -> Any:
        if not isinstance(body, dict):
            raise ConsensusError(f"bulk request from {sender} is not a map")
        op = body.get("op")
        if op == "begin":
            index, positions, blob = state.export_begin()
            return {"index": index, "positions": positions, "state": blob}
        if op == "events":
            lineage, after, upto = body.get("lineage"), body.get("after"), body.get("upto")
            if not isinstance(lineage, str) or type(after) is not int or type(upto) is not int:
                raise ConsensusError(
                    f"bulk request from {sender}: lineage, after and upto are required"
                )
            rows = state.store.export_events(lineage, after, upto, CHUNK_BYTES)
            return {"events": [[position, topic, raw] for position, topic, raw in rows]}
        raise ConsensusError(f"bulk request from {sender}: unknown op {op!r}")

    return handle


def fetch(
    transport: Requester,
    state: LedgerState,
    peer: str,
    at_least: int,
    progress: Callable[[int, int], None] | None = None,
) -> Fetched | None:
    """Fetch and store ``peer``'s state if it has applied at least ``at_least``.

    Returns None when the peer is not that far yet; raises TarsError (TransportError,
    IntegrityError, StoreError...) when the peer cannot be reached or its events fail
    the store's checks — in every case nothing was stored.
    """
    started = time.monotonic()
    begin = transport.request(peer, CHANNEL, {"op": "begin"}, timeout=REQUEST_TIMEOUT)
    index, positions, blob = _begin_fields(peer, begin)
    if index < at_least:
        return None
    mine = state.store.positions()
    events: list[tuple[str, int, str, bytes]] = []
    size = 0
    total = sum(max(0, upto - mine.get(lineage, 0)) for lineage, upto in positions.items())
    for lineage, upto in sorted(positions.items()):
        after = mine.get(lineage, 0)
        if after > upto:
            raise ConsensusError(
                f"lineage {lineage[:12]} is at position {after} here but {upto} on {peer}, "
                f"which has applied more of the ledger ({index})",
                hint="this node's store holds events no ledger entry made: rebuild it (move it away)",
            )
        while after < upto:
            reply = transport.request(
                peer,
                CHANNEL,
                {"op": "events", "lineage": lineage, "after": after, "upto": upto},
                timeout=REQUEST_TIMEOUT,
            )
            rows = _event_rows(peer, reply)
            if not rows or rows[0][0] != after + 1 or rows[-1][0] > upto:
                raise ConsensusError(
                    f"{peer} answered lineage {lineage[:12]} after {after} (up to {upto}) "
                    f"with positions {rows[0][0] if rows else '-'}–{rows[-1][0] if rows else '-'}"
                )
            for position, topic, raw in rows:
                events.append((lineage, position, topic, raw))
                size += len(raw)
            after = rows[-1][0]
            if progress is not None:
                progress(len(events), total)
    if index <= state.applied_index:
        return None  # caught up meanwhile (another fetch, or the log)
    stored = state.import_state(events, index, blob)
    return Fetched(peer, index, stored, size, time.monotonic() - started)


def fetch_from_any(
    transport: Requester,
    state: LedgerState,
    peers: Callable[[], Sequence[str]],
    at_least: int,
    stopping: threading.Event,
    retry: float = 0.5,
    progress: Callable[[int, int], None] | None = None,
) -> Fetched | None:
    """Try peers in turn (the caller puts the likeliest first) until one serves ``at_least``.

    Retries until it succeeds, this node already has that index, or ``stopping`` is set
    (then None).  A peer that fails is logged and the next one tried.
    """
    while not stopping.is_set():
        if state.applied_index >= at_least:
            return None
        for peer in peers():
            if stopping.is_set():
                return None
            try:
                got = fetch(transport, state, peer, at_least, progress)
            except TarsError as exc:
                logger.warning("state transfer from %s failed: %s", peer, exc)
                continue
            if got is not None:
                return got
            if state.applied_index >= at_least:
                return None
        stopping.wait(retry)
    return None


def _begin_fields(peer: str, reply: Any) -> tuple[int, dict[str, int], bytes]:
    try:
        index, positions, blob = reply["index"], reply["positions"], reply["state"]
    except (TypeError, KeyError) as exc:
        raise ConsensusError(f"{peer} answered a state transfer with a malformed reply") from exc
    ok = (
        type(index) is int
        and isinstance(blob, bytes)
        and isinstance(positions, dict)
        and all(isinstance(k, str) and type(v) is int for k, v in positions.items())
    )
    if not ok:
        raise ConsensusError(f"{peer} answered a state transfer with a malformed reply")
    return index, positions, blob


def _event_rows(peer: str, reply: Any) -> list[tuple[int, str, bytes]]:
    rows = reply.get("events") if isinstance(reply, dict) else None
    if not isinstance(rows, list):
        raise ConsensusError(f"{peer} answered an events request with a malformed reply")
    out = []
    for row in rows:
        if not (
            isinstance(row, list | tuple)
            and len(row) == 3
            and type(row[0]) is int
            and isinstance(row[1], str)
            and isinstance(row[2], bytes)
        ):
            raise ConsensusError(f"{peer} sent a malformed event row")
        out.append((row[0], row[1], row[2]))
    for earlier, later in zip(out, out[1:], strict=False):
        if later[0] != earlier[0] + 1:
            raise ConsensusError(f"{peer} sent events out of order")
    return out
