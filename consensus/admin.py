"""The node's ``admin`` channel: what the CLI (and the swarm tests) ask a running node.

Ops: ``status``, ``rollback`` (a ledger entry, so every node rolls back together),
``add``/``remove`` (a member joins or leaves the Raft group, then the ledger records
the new member list), ``block`` (fault injection: cut this node's traffic with some
peers, as a partition would), ``sync`` (wait until this node has applied the swarm's
commit index; say what came), ``held`` and ``decide`` (a person's signed approval of a
held candidate: :mod:`consensus.approval_admin`) and the ops a node hands in (``ops``: the Deployer's
``rollout`` and ``deploy``, docs/rollouts.md).  A request that fails for a reason the user can fix
comes back as ``{"ok": False, "error": ...}``; a malformed one raises, and the
transport sends the error back to the caller.

Everything outside the ledger is handed in (the node's counters and stage, the
transport's block and add-peer, the clock), so this module needs neither the network
nor the config.

Rollbacks and member lists are the admin's entries: they count only with the admin's
signature.  A request may carry the entry the CLI signed (``entry``), which is proposed
as it is; otherwise the node signs with the admin's signing key when it was handed one
(a local cluster, where the CLI's keys folder is the nodes' too), and refuses when not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from consensus.admin_reads import read_ops
from consensus.applier import Applier, Clock
from consensus.approval_admin import approvers_op, decide_op, held_op
from consensus.authors import ADMIN_ONLY
from consensus.entries import decode
from consensus.ledger import LedgerState, members_entry, rollback_entry
from consensus.signing import Signer, sign, split
from events.store import GenomeStore
from evolution.errors import PolicyError, TarsError
from evolution.tree import short
from runtime.cluster_config import ADMIN

# The node's log lines keep the one logger name they had when all of this was node.py.
log = logging.getLogger("tars.node")

#: The engine's figures about its log that `status` shows under "log".
LOG_FIGURES = ("log_start", "log_len", "snapshot_index", "compactions", "snapshots_installed")


class Engine(Protocol):
    """What the admin ops need from the consensus engine (``RaftEngine`` offers it)."""

    def status(self) -> dict[str, Any]: ...

    def add_member(self, node_id: str, timeout: float = 10.0) -> None: ...

    def remove_member(self, node_id: str, timeout: float = 10.0) -> None: ...


class Admin:
    """Answers one admin request; :meth:`handle` is the transport's ``admin`` handler."""

    def __init__(
        self,
        node_id: str,
        *,
        store: GenomeStore,
        state: LedgerState,
        engine: Engine,
        ledger: Applier,
        counters: Callable[[], dict[str, int]],
        stage: Callable[[], str],
        add_peer: Callable[[str], None],
        block: Callable[[list[str]], None],
        clock: Clock,
        admin_signer: Signer | None = None,
        sign_key_of: Callable[[str], str] | None = None,
        ops: Mapping[str, Callable[[dict[str, Any]], Any]] | None = None,
    ) -> None:
        self.id = node_id
        self.store = store
        self.state = state
        self.engine = engine
        self.ledger = ledger
        self.counters = counters
        self.stage = stage
        self.add_peer = add_peer
        self.block = block
        self.clock = clock
        #: signs the admin's entries for requests that bring none signed (a local cluster)
        self.admin_signer = admin_signer
        #: a new member's public signing key (base64), recorded with the member list
        self.sign_key_of = sign_key_of
        #: admin requests refused because a member key, not the admin key, sent them
        self.refused = 0
        #: more ops: the dashboard's reads, and those other parts of the node answer (the Deployer's)
        self.ops = {**read_ops(store), **dict(ops or {})}

    def handle(self, sender: str, body: Any) -> Any:
        # Roles per key: a member key speaks Raft, votes, transfer and remote actor
        # messages; only the admin key (the CLI) may roll back, add, remove or block.
        if sender != ADMIN:
            self.refused += 1
            log.warning("%s: admin request from %s refused (a member key)", self.id, sender)
            raise TarsError(
                f"{self.id} answers admin requests only from the admin key, not from {sender}",
                hint="use the tars CLI with the admin key (`tars keys --config cluster.yml`)",
            )
        if not isinstance(body, dict) or not isinstance(body.get("op"), str):
            raise TarsError("admin request must be a map with an 'op'")
        op = body["op"]
        if op == "status":
            return self.status()
        if op in ("add", "remove"):
            return self.change_members(op, str(body.get("node", "")), body.get("entry"))
        if op == "rollback":
            return self.rollback(sender, body)
        if op == "sync":
            return self.sync(body)
        if op == "held":  # what waits for a person, and a person's signed decision
            return held_op(self.store, self.state, body)
        if op == "decide":
            return decide_op(self.store, self.state, self.ledger, body)
        if op == "approvers":  # who approves from now on, admin-signed (docs/approval.md)
            return approvers_op(self.state, self.ledger, body, self._admin_signed, self.clock())
        if op in self.ops:
            return self.ops[op](body)
        if op == "block":
            # Fault injection for partition tests: drop this node's traffic to and from
            # these peers at the transport, as a cut network would; [] heals.
            peers = [str(p) for p in body.get("peers", [])]
            self.block(peers)
            log.warning(
                "%s: traffic with %s blocked by an admin request",
                self.id,
                ", ".join(peers) or "nobody",
            )
            return {"ok": True, "blocked": peers}
        raise TarsError(
            f"unknown admin op {op!r}",
            hint=f"ops: {', '.join(['status', 'add', 'remove', 'rollback', 'block', 'sync', 'held', 'decide', 'approvers', *self.ops])}",
        )

    def sync(self, body: dict[str, Any]) -> dict[str, Any]:
        """Wait until this node has applied ``index`` (the swarm's commit index as the CLI
        saw it; this node's own commit index if absent); what moved, and any state transfer."""
        before, seen = self.ledger.applied, self.ledger.last_transfer
        heads = {name: self.store.head(name).version for name in self.store.genomes()}
        target = int(body.get("index") or self.engine.status().get("commit_index", 0))
        try:
            self.ledger.wait_applied(target, float(body.get("timeout", 30.0)))
        except TarsError as exc:
            return {"ok": False, "node": self.id, "error": str(exc), "applied": self.ledger.applied}
        now = self.heads()
        fetched = self.ledger.last_transfer
        return {
            "ok": True,
            "node": self.id,
            "applied_before": before,
            "applied": self.ledger.applied,
            "heads": {name: head["version"] for name, head in now.items()},
            "moved": {
                name: [heads.get(name), head["version"]]
                for name, head in now.items()
                if heads.get(name) != head["version"]
            },
            "transfer": fetched._asdict() if fetched is not None and fetched is not seen else None,
        }

    def rollback(self, sender: str, body: dict[str, Any]) -> dict[str, Any]:
        """Propose a rollback of ``genome`` to version ``to`` (a prefix will do)."""
        genome, to = str(body.get("genome", "")), str(body.get("to", ""))
        try:
            target = self.store.resolve(genome, to)
            if target == self.store.head(genome).version:
                raise PolicyError(
                    f"{genome} is already at {short(target)}",
                    hint="roll back to an earlier version (`tars log lineage` lists them)",
                )
            reason = str(body.get("reason", "manual rollback"))
            entry = body.get("entry")
            if entry is None:
                entry = self._admin_signed(
                    rollback_entry(genome, target, reason, sender, self.clock())
                )
            index = self.ledger.propose(self._checked(entry))
        except TarsError as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True, "index": index, "head": self.store.head(genome).version}

    def change_members(self, op: str, member: str, entry: Any = None) -> dict[str, Any]:
        """Add or remove a Raft member, then record the new member list in the ledger
        (with a new member's signing key), as an entry the admin signed."""
        try:
            keys: dict[str, str] = {}
            if op == "add":
                members = sorted(set(self.state.members) | {member})
                if self.sign_key_of is not None:
                    keys[member] = self.sign_key_of(member)
            else:
                members = sorted(set(self.state.members) - {member})
            if entry is None:
                entry = self._admin_signed(members_entry(members, ADMIN, self.clock(), keys=keys))
            entry = self._checked(entry)
            if op == "add":
                self.add_peer(member)
                self.engine.add_member(member)
            else:
                self.engine.remove_member(member)
            self.ledger.propose(entry)
        except TarsError as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True, "error": None, "members": members}

    def _admin_signed(self, data: bytes) -> bytes:
        if self.admin_signer is None:
            raise PolicyError(
                f"{self.id} holds no admin signing key, and the request brought no signed entry",
                hint="send the entry signed with the admin key (`tars keys` makes it)",
            )
        return sign(data, self.admin_signer)

    def _checked(self, entry: Any) -> bytes:
        """An admin entry as the request gave it: signed bytes of a rollback or member list."""
        if not isinstance(entry, bytes) or split(entry) is None:
            raise PolicyError("an admin entry must be signed entry bytes")
        try:
            typed = decode(entry)
        except TarsError as exc:
            raise PolicyError(f"the admin entry does not decode: {exc}") from exc
        if not isinstance(typed, ADMIN_ONLY) or getattr(typed, "node", None) != ADMIN:
            raise PolicyError("only a rollback or a member list, in the admin's name, may be sent")
        return entry

    def status(self) -> dict[str, Any]:
        """The node as `tars cluster status` shows it: role, ledger, heads, counters."""
        engine = self.engine.status()
        fetched = self.ledger.last_transfer
        return {
            "node": self.id,
            "role": engine.get("role"),
            "leader": engine.get("leader"),
            "term": engine.get("term", 0),
            "commit_index": engine.get("commit_index", 0),
            "applied_index": self.ledger.applied,
            "members": self.state.members,
            # every node must judge approvals alike: a node that reads other approvers shows here
            "approval": {
                "quorum": self.state.approval.quorum,
                "approvers": sorted(self.state.approval.keys),
            },
            "heads": self.heads(),
            "halted": self.ledger.halted,
            "stage": self.stage(),
            "counters": {**self.counters(), "refused_admin": self.refused},
            "log": {key: engine.get(key, 0) for key in LOG_FIGURES},
            "last_transfer": fetched._asdict() if fetched is not None else None,
        }

    def heads(self) -> dict[str, Any]:
        """Each genome's head, fitness, history length, waiting proposals and hash chain."""
        heads: dict[str, Any] = {}
        for name in self.store.genomes():
            head = self.store.head(name)
            heads[name] = {
                "version": head.version,
                "fitness": head.fitness,
                "versions": head.versions_count,
                "cycles": head.cycles_completed,
                "waiting": len(head.proposals),
                "held": len(head.pending),  # candidates waiting for a person (docs/approval.md)
                "chain": self.store.chain(name),
            }
        return heads
