"""The Raft wire: pysyncobj's messages as checked msgpack over our transport, never pickle.

pysyncobj hands its ``Transport`` plain dicts and expects dicts back; it would pickle
them.  :class:`_RaftWire` sends each message type as a whitelisted msgpack map on the
transport's channel ``"raft"`` and validates every field on the way in (:func:`from_wire`),
so a frame from a peer can only ever become one of the messages pysyncobj itself sends.
Only the membership commands pysyncobj writes into its log are pickles; they are read
with :func:`safe_loads`, which refuses every global.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from consensus._pysyncobj import MEMBERSHIP_COMMAND, NO_OP_COMMAND, Node, WireBase, safe_loads
from consensus.interface import MessageTransport
from consensus.journal import CrcJournal

logger = logging.getLogger(__name__)

CHANNEL = "raft"
#: Command type byte for TARS payloads; pysyncobj's own types are 0..3 and it skips
#: (never unpickles) any other type when applying.
TAG = b"T"
_NO_OP = NO_OP_COMMAND
_MEMBERSHIP = MEMBERSHIP_COMMAND


class RaftNode(Node):  # type: ignore[misc]
    """A pysyncobj node named by our node id; the transport knows its endpoint."""

    def __init__(self, node_id: str) -> None:
        super().__init__(node_id)


# ---- wire format ------------------------------------------------------------------------

_INT = "int"
_OPT_INT = "opt_int"
_BOOL = "bool"
_BYTES = "bytes"
_ENTRIES = "entries"
_SNAP = "snapshot_chunk"
_SCHEMA: dict[str, dict[str, tuple[str, bool]]] = {
    # type -> field -> (kind, required)
    "request_vote": {
        "term": (_INT, True),
        "last_log_index": (_INT, True),
        "last_log_term": (_INT, True),
    },
    "response_vote": {"term": (_INT, True)},
    # Pre-vote (ours, not pysyncobj's): handled by the engine, never handed to pysyncobj.
    "pre_vote": {
        "term": (_INT, True),
        "last_log_index": (_INT, True),
        "last_log_term": (_INT, True),
    },
    "pre_vote_response": {"term": (_INT, True), "granted": (_BOOL, True)},
    "timeout_now": {"term": (_INT, True)},
    "append_entries": {
        "term": (_INT, True),
        "commit_index": (_INT, True),
        # absent in a snapshot offer, which carries ``serialized`` instead
        "prevLogIdx": (_OPT_INT, False),
        "prevLogTerm": (_OPT_INT, False),
        "entries": (_ENTRIES, False),
        # a chunk of the snapshot file: [bytes, is_first, is_last], or None (busy)
        "serialized": (_SNAP, False),
    },
    "apply_command": {"command": (_BYTES, True), "request_id": (_INT, False)},
    "apply_command_response": {
        "request_id": (_INT, True),
        "error": (_INT, False),
        "log_idx": (_INT, False),
        "log_term": (_INT, False),
    },
    "next_node_idx": {
        "next_node_idx": (_INT, True),
        "reset": (_BOOL, True),
        "success": (_BOOL, True),
    },
}


def command_ok(command: Any) -> bool:
    """Only commands this engine creates may enter a log: ours, no-ops, membership."""
    if not isinstance(command, bytes) or not command:
        return False
    kind = command[0]
    if command[:1] == TAG or kind == _NO_OP:
        return True
    if kind != _MEMBERSHIP:
        return False
    try:
        request = safe_loads(command[1:])
    except Exception:
        return False
    return (
        isinstance(request, list)
        and len(request) == 2
        and request[0] in ("add", "rem")
        and isinstance(request[1], str)
    )


def _field_ok(kind: str, value: Any) -> bool:
    if kind == _INT:
        return type(value) is int
    if kind == _OPT_INT:
        return value is None or type(value) is int
    if kind == _BOOL:
        return isinstance(value, bool)
    if kind == _BYTES:
        return command_ok(value)
    if kind == _SNAP:
        return value is None or (
            isinstance(value, list | tuple)
            and len(value) == 3
            and isinstance(value[0], bytes)
            and isinstance(value[1], bool)
            and isinstance(value[2], bool)
        )
    return isinstance(value, list | tuple) and all(
        isinstance(e, list | tuple)
        and len(e) == 3
        and command_ok(e[0])
        and type(e[1]) is int
        and type(e[2]) is int
        for e in value
    )


def to_wire(message: dict[str, Any]) -> dict[str, Any] | None:
    """pysyncobj message -> msgpack-safe dict, or None if it must not leave the node."""
    kind = message.get("type")
    schema = _SCHEMA.get(kind) if isinstance(kind, str) else None
    if schema is None or set(message) - set(schema) - {"type"}:
        return None
    body: dict[str, Any] = {"type": kind}
    for field, (fkind, required) in schema.items():
        if field not in message:
            if required:
                return None
            continue
        value = message[field]
        if fkind == _ENTRIES:
            value = [[bytes(c), i, t] for c, i, t in value]
        elif fkind == _BYTES:
            value = bytes(value)
        elif fkind == _SNAP:
            if not _field_ok(_SNAP, value):
                return None  # only our manifest's chunks, never a pickle
            value = None if value is None else list(value)
        body[field] = value
    return body


def from_wire(body: Any) -> dict[str, Any] | None:
    """Validated wire dict -> pysyncobj message (entries as tuples), or None to drop."""
    if not isinstance(body, dict):
        return None
    kind = body.get("type")
    schema = _SCHEMA.get(kind) if isinstance(kind, str) else None
    if schema is None or set(body) - set(schema) - {"type"}:
        return None
    message: dict[str, Any] = {"type": kind}
    for field, (fkind, required) in schema.items():
        if field not in body:
            if required:
                return None
            continue
        value = body[field]
        if not _field_ok(fkind, value):
            return None
        if fkind == _ENTRIES:
            value = [(c, i, t) for c, i, t in value]
        elif fkind == _SNAP and value is not None:
            value = tuple(value)
        message[field] = value
    if kind == "append_entries" and ("prevLogIdx" in message) == ("serialized" in message):
        return None  # either entries after a previous one, or a snapshot chunk
    if ("prevLogIdx" in message) != ("prevLogTerm" in message):
        return None
    return message


class _RaftWire(WireBase):
    """pysyncobj ``Transport`` over our transport's channel ``"raft"``.

    Every configured member counts as connected from the start and stays so: pysyncobj
    only sends append_entries to "connected" nodes and only starts elections when
    connected to someone, and our transport has no connection events.  Loss is left to
    Raft's own timeouts, as the protocol intends.

    Frames from non-members are dropped, so a removed node cannot disrupt elections.
    pysyncobj stops replicating to a node the moment its removal is *appended*, so the
    node would never learn that the removal committed (and a node removing itself would
    wait forever); for ``grace`` seconds a removed node therefore stays a pysyncobj
    read-only node: it still receives the log, and only its acknowledgements are let in.
    """

    def __init__(
        self,
        transport: MessageTransport,
        members: dict[str, RaftNode],
        before_send: Callable[[], None],
        grace: float,
        journal: CrcJournal | None = None,
    ) -> None:
        super().__init__(None, None, None)
        self._transport = transport
        self._members = members
        self._before_send = before_send
        self._grace = grace
        self._leaving: dict[str, tuple[RaftNode, float]] = {}
        self._journal = journal
        self.skipped_entries = 0
        self.refused = 0
        self.dropped_unknown = 0
        self.dropped_invalid = 0
        self.send_errors = 0
        self._chunks: dict[str, bytearray] = {}
        #: when this node last heard a leader's append_entries (monotonic), for pre-vote
        self.leader_heard_at = 0.0
        #: the engine's pre-vote handler: pre-vote frames never reach pysyncobj
        self.on_pre_vote: Callable[[RaftNode, dict[str, Any]], None] | None = None
        #: the engine's snapshot-offer handler: it decides when pysyncobj may install one
        self.on_snapshot_offer: Callable[[RaftNode, dict[str, Any]], None] | None = None
        #: true while the engine waits for the application to fetch an offered snapshot's state
        self.holding: Callable[[], bool] | None = None
        self.held = 0
        self.command_check: Callable[[str, bytes], bool] | None = None  # _command_allowed
        self.refused_commands = 0

    def connect_all(self) -> None:
        for node in list(self._members.values()):
            self.connected(node)

    def addNode(self, node: Node) -> None:  # noqa: N802 (pysyncobj's name)
        # A node re-added during its grace stays in pysyncobj's read-only set: harmless,
        # it is then also a voting member and replicated to once.
        self._leaving.pop(node.id, None)
        canonical = self._members.setdefault(node.id, RaftNode(node.id))
        self.connected(canonical)

    def dropNode(self, node: Node) -> None:  # noqa: N802
        self._members.pop(node.id, None)
        self.disconnected(node)
        leaving = RaftNode(node.id)
        self._leaving[node.id] = (leaving, time.monotonic() + self._grace)
        self.readonly_connected(leaving)

    def expire(self) -> None:
        """End the grace of removed nodes (driver thread)."""
        if not self._leaving:
            return
        now = time.monotonic()
        for node_id, (node, until) in list(self._leaving.items()):
            if now >= until:
                del self._leaving[node_id]
                self.readonly_disconnected(node)

    def send(self, node: Node, message: dict[str, Any]) -> bool:
        if "transmission" in message:
            reassembled = self._reassemble(node.id, message)
            if reassembled is None:
                return True
            message = reassembled
        body = to_wire(message)
        if body is None:
            self.refused += 1
            logger.error("raft: refused to send %r to %s", message.get("type"), node.id)
            return False
        # Durability before acknowledgement: nothing leaves before the journal is synced.
        self._before_send()
        try:
            return bool(self._transport.send(node.id, CHANNEL, body))
        except Exception as exc:
            self.send_errors += 1
            logger.debug("raft: send to %s failed: %s", node.id, exc)
            return False

    def _reassemble(self, node_id: str, message: dict[str, Any]) -> dict[str, Any] | None:
        """Collect one pickled-entry transfer; return it as a plain message when whole.

        pysyncobj emits all chunks of an entry in one call, but may label more than one
        of them "finish" (it compares against the entry's length, not the pickle's), so
        the entry is complete when the buffer unpickles, not at the first "finish".  The
        pickle is our own, made a moment ago on this node, and is read with the
        restricted unpickler anyway.
        """
        if message["transmission"] == "start":
            self._chunks[node_id] = bytearray()
        buffer = self._chunks.setdefault(node_id, bytearray())
        buffer += message["data"]
        if message["transmission"] != "finish":
            return None
        try:
            command, index, term = safe_loads(bytes(buffer))
        except Exception:
            return None
        del self._chunks[node_id]
        return {
            "type": "append_entries",
            "term": message["term"],
            "commit_index": message["commit_index"],
            "prevLogIdx": message["prevLogIdx"],
            "prevLogTerm": message["prevLogTerm"],
            "entries": [(command, index, term)],
        }

    def deliver(self, sender: str, body: Any) -> None:
        node = self._members.get(sender)
        if node is None:
            leaving = self._leaving.get(sender)
            if leaving is None or not isinstance(body, dict) or body.get("type") != "next_node_idx":
                self.dropped_unknown += 1
                return
            node = leaving[0]
        message = from_wire(body)
        if message is None:
            self.dropped_invalid += 1
            logger.warning("raft: dropped an invalid frame from %s", sender)
            return
        kind = message["type"]
        if kind == "apply_command" and not self._command_allowed(sender, message["command"]):
            return
        if kind in ("pre_vote", "pre_vote_response"):
            if self.on_pre_vote is not None:
                self.on_pre_vote(node, message)
            return
        if kind == "append_entries":
            self.leader_heard_at = time.monotonic()
            if "serialized" in message:
                if self.on_snapshot_offer is not None:
                    self.on_snapshot_offer(node, message)
                else:
                    self.dropped_invalid += 1
                return
            if self.holding is not None and self.holding():
                # This node is fetching the state a snapshot offer asked for: answering
                # would send the leader back to offering the snapshot at every heartbeat.
                # Only the heartbeat part goes through (leader known, timer reset).
                self.held += 1
                message = {"type": "append_entries", "term": message["term"], "commit_index": 0}
            elif message.get("entries"):
                self._skip_entries_we_have(message)
        self.received(node, message)

    def _command_allowed(self, sender: str, command: bytes) -> bool:
        """False for a forwarded entry the application refuses (a vote in another's name)."""
        check = self.command_check
        if check is None or command[:1] != TAG or check(sender, command[1:]):
            return True
        self.refused_commands += 1
        logger.warning("raft: refused an entry %s forwarded in another's name", sender)
        return False

    def voters(self) -> list[RaftNode]:
        """The other voting members (a removed node in its grace period is not one)."""
        return list(self._members.values())

    def _skip_entries_we_have(self, message: dict[str, Any]) -> None:
        """Drop the leading entries this node already holds (same index, term, bytes).

        pysyncobj truncates its log after ``prevLogIdx`` and re-appends whenever a leader
        re-sends entries (its next-index moves back on late acknowledgements), so entries
        already acknowledged would briefly vanish from disk and be written and synced
        again.  Raft only truncates on a *conflict*; by the log matching property an
        entry equal to ours at the same index and term means all before it match too, so
        advancing ``prevLogIdx`` past such entries is exactly Raft's rule.
        """
        journal = self._journal
        if journal is None or message["prevLogIdx"] is None or not len(journal):
            return
        first, last = journal[0][1], journal[-1][1]
        entries = message["entries"]
        skip = 0
        while skip < len(entries):
            command, index, term = entries[skip]
            if index > last or index < first:
                break
            mine = journal[index - first]
            if mine[2] != term or mine[0] != command:
                break
            skip += 1
        if skip:
            message["prevLogIdx"], message["prevLogTerm"] = (
                entries[skip - 1][1],
                entries[skip - 1][2],
            )
            message["entries"] = entries[skip:]
            self.skipped_entries += skip
