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

A chain proves that events fit together, not that they are the swarm's: an
authenticated peer could serve history of its own making that chains cleanly.  So a
node standing on a snapshot fetches the events up to exactly the chain heads that
snapshot committed (:func:`consensus.ledger.heads_of`: each lineage's last position and
chain at the ledger index ``heads_index``), and refuses a transfer whose last event
there does not carry the committed chain (:class:`UncommittedHistory`, counted as
``refused_transfers``); it then asks the next peer.  The log after ``heads_index`` is
replayed over the imported state as usual.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

from consensus.ledger import LedgerState, heads_of
from events.transcoder import unpackb
from evolution.errors import ConsensusError, IntegrityError, TarsError
from evolution.swarm import majority

logger = logging.getLogger(__name__)

CHANNEL = "bulk"
#: Bytes of event state per reply: well under the transport's 8 MiB frame.
CHUNK_BYTES = 1 << 20
#: Seconds a peer may take to answer one request.
REQUEST_TIMEOUT = 15.0


class Requester(Protocol):
    def request(self, peer: str, channel: str, body: Any, timeout: float = 5.0) -> Any: ...


class UncommittedHistory(ConsensusError):
    """A peer served events whose chain head the ledger never committed."""


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


#: A state to fetch: (ledger index, the state blob at it, whose heads are the goal).
Goal = tuple[int, bytes]


def fetch(
    transport: Requester,
    state: LedgerState,
    peer: str,
    at_least: int,
    progress: Callable[[int, int], None] | None = None,
    committed: bytes | None = None,
    goal: Goal | None = None,
) -> Fetched | None:
    """Fetch and store ``peer``'s state if it has applied at least ``at_least``.

    With ``committed`` (the state blob of the snapshot this node stands on) the events
    must pass through that snapshot's committed chain heads, and they are fetched up to
    the heads of ``goal`` (a later state a majority of members reported alike, see
    :func:`agreed_state`) or else up to the committed heads themselves; a last event that
    does not carry the expected chain is :class:`UncommittedHistory`.  The goal's (or
    snapshot's) member list and keys are then this node's.  Without ``committed`` (tests
    of the protocol) the peer's whole state is taken as its chain checks allow.

    Returns None when the peer is not that far yet; raises TarsError (TransportError,
    IntegrityError, StoreError...) when the peer cannot be reached or its events fail
    the checks — in every case nothing was stored.
    """
    started = time.monotonic()
    begin = transport.request(peer, CHANNEL, {"op": "begin"}, timeout=REQUEST_TIMEOUT)
    index, positions, blob = _begin_fields(peer, begin)
    checks: list[dict[str, tuple[int, str]]] = []
    if committed is not None:
        goal = goal or (_heads(committed)[0], committed)
        at_least = max(at_least, goal[0])
        checks = [_heads(committed)[1], _heads(goal[1])[1]]
    if index < at_least:
        return None
    targets = positions
    if goal is not None and checks:
        targets = _targets(peer, index, positions, checks[-1])
        index, blob = goal
    events, size = _fetch_events(transport, state, peer, index, targets, checks, progress)
    if index <= state.applied_index:
        return None  # caught up meanwhile (another fetch, or the log)
    stored = state.import_state(events, index, blob)
    return Fetched(peer, index, stored, size, time.monotonic() - started)


def agreed_state(
    transport: Requester, state: LedgerState, peers: Sequence[str], committed: bytes
) -> Goal | None:
    """The latest state (index, blob) that a majority of the members reported alike.

    Each reply comes from a distinct authenticated member (CurveZMQ), so no single peer
    can make up such a state; one that does not extend the snapshot's committed heads is
    ignored.  None when no state has that many witnesses (a busy swarm whose nodes are at
    different indexes): the caller then fetches up to the committed heads and replays
    the log from there.
    """
    floor_index, floor = _heads(committed)
    seen: dict[Goal, set[str]] = {}
    for peer in peers:
        try:
            reply = transport.request(peer, CHANNEL, {"op": "begin"}, timeout=REQUEST_TIMEOUT)
            index, _, blob = _begin_fields(peer, reply)
            found = heads_of(blob)
        except TarsError:
            continue
        if found is None or found[0] != index or index < floor_index:
            continue
        if all(found[1].get(k, (0, ""))[0] >= pos for k, (pos, _) in floor.items()):
            seen.setdefault((index, blob), set()).add(peer)
    need = majority(state.members)
    agreed = [goal for goal, witnesses in seen.items() if len(witnesses) >= need]
    return max(agreed, key=lambda goal: goal[0]) if agreed else None


def _heads(blob: bytes) -> tuple[int, dict[str, tuple[int, str]]]:
    found = heads_of(blob)
    if found is None:
        raise ConsensusError("the snapshot's state names no committed chain heads")
    return found


def _targets(
    peer: str, index: int, positions: dict[str, int], heads: dict[str, tuple[int, str]]
) -> dict[str, int]:
    """How far to fetch each lineage: to the goal's head, which the peer must hold."""
    for lineage, (position, _) in heads.items():
        if positions.get(lineage, 0) < position:
            raise UncommittedHistory(
                f"{peer} says it applied the ledger up to {index} but holds lineage "
                f"{lineage[:12]} only up to position {positions.get(lineage, 0)}, short of "
                f"the committed {position}"
            )
    return {lineage: position for lineage, (position, _) in heads.items()}


def _fetch_events(
    transport: Requester,
    state: LedgerState,
    peer: str,
    index: int,
    targets: dict[str, int],
    checks: list[dict[str, tuple[int, str]]],
    progress: Callable[[int, int], None] | None,
) -> tuple[list[tuple[str, int, str, bytes]], int]:
    mine = state.store.positions()
    events: list[tuple[str, int, str, bytes]] = []
    size = 0
    total = sum(max(0, upto - mine.get(lineage, 0)) for lineage, upto in targets.items())
    for lineage, upto in sorted(targets.items()):
        after = mine.get(lineage, 0)
        if after > upto:
            raise ConsensusError(
                f"lineage {lineage[:12]} is at position {after} here but {upto} on {peer}, "
                f"which has applied more of the ledger ({index})",
                hint="this node's store holds events no ledger entry made: rebuild it (move it away)",
            )
        marks = {c[lineage][0]: c[lineage][1] for c in checks if lineage in c}
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
                if position in marks:
                    _check_chain(peer, lineage, position, raw, marks[position])
                events.append((lineage, position, topic, raw))
                size += len(raw)
            after = rows[-1][0]
            if progress is not None:
                progress(len(events), total)
    return events, size


def _check_chain(peer: str, lineage: str, position: int, raw: bytes, committed: str) -> None:
    """An event at a committed head must carry the committed chain (the store's import
    then checks every link, so everything before it is the committed history too)."""
    try:
        chain = unpackb(raw).get("chain")
    except Exception:
        chain = None
    if chain != committed:
        raise UncommittedHistory(
            f"{peer} served lineage {lineage[:12]} at position {position} with chain "
            f"{str(chain)[:12]}, but the ledger committed {committed[:12]} there: history the "
            "swarm never made"
        )


def fetch_from_any(
    transport: Requester,
    state: LedgerState,
    peers: Callable[[], Sequence[str]],
    at_least: int,
    stopping: threading.Event,
    retry: float = 0.5,
    progress: Callable[[int, int], None] | None = None,
    committed: bytes | None = None,
    refused: Callable[[], None] | None = None,
) -> Fetched | None:
    """Try peers in turn (the caller puts the likeliest first) until one serves ``at_least``.

    Retries until it succeeds, this node already has that index, or ``stopping`` is set
    (then None).  A peer that fails is logged and the next one tried; one whose events
    are not the committed history (or fail the store's checks) is also told to
    ``refused``, which counts it.  With ``committed``, the goal is the latest state a
    majority of members agree on (:func:`agreed_state`), else the committed heads.
    """
    while not stopping.is_set():
        if state.applied_index >= at_least:
            return None
        chosen = list(peers())
        goal = None
        if committed is not None:
            goal = agreed_state(transport, state, chosen, committed)
        for peer in chosen:
            if stopping.is_set():
                return None
            try:
                got = fetch(transport, state, peer, at_least, progress, committed, goal)
            except TarsError as exc:
                logger.warning("state transfer from %s refused or failed: %s", peer, exc)
                if refused is not None and isinstance(exc, UncommittedHistory | IntegrityError):
                    refused()
                continue
            if got is not None:
                return got
            if state.applied_index >= at_least:
                return None
        stopping.wait(retry)
    return None


def progress_reporter(node: str, stage: Callable[[str], None]) -> Callable[[int, int], None]:
    """Shows a fetch's progress as the node's stage, and in its log every two seconds."""
    shown = [0.0]

    def progress(done: int, total: int) -> None:
        text = f"fetching state: {done} of {total} events"
        stage(text)
        if time.monotonic() - shown[0] >= 2.0:  # a long transfer is never silent in the log
            shown[0] = time.monotonic()
            logging.getLogger("tars.node").info("%s: %s", node, text)

    return progress


def describe(got: Fetched) -> str:
    """A finished transfer as the node's log says it."""
    return (
        f"fetched {got.events} events ({got.size / 1e6:.1f} MB) up to index {got.index} "
        f"from {got.peer} in {got.seconds:.1f} s"
    )


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
