"""What ``RaftEngine.status()`` answers: one dict, rebuilt by the driver after every tick.

Callers on other threads read the last one whole, never the core's live state, so a
status is always one consistent moment.
"""

from __future__ import annotations

from typing import Any

from consensus._pysyncobj import Core
from consensus.compaction import Compaction
from consensus.delivery import Delivery
from consensus.journal import CrcJournal
from consensus.prevote import PreVote
from consensus.wire import _RaftWire

ROLES = {0: "follower", 1: "candidate", 2: "leader"}


def stopped(node_id: str, peers: list[str]) -> dict[str, Any]:
    """The status of an engine that never ran."""
    return {
        "node": node_id,
        "role": "stopped",
        "term": 0,
        "leader": None,
        "commit_index": 0,
        "last_applied": 0,
        "log_len": 0,
        "members": sorted(peers),
        "running": False,
    }


def running(
    node_id: str,
    *,
    role: int,
    core: Core,
    journal: CrcJournal,
    wire: _RaftWire,
    applier: Delivery,
    compaction: Compaction,
    pre_vote: PreVote,
    removed: bool,
    live: bool,
    tick_errors: int,
) -> dict[str, Any]:
    """The status of a started engine, with its counters (docs/consensus.md)."""
    leader = core.leader
    members = sorted(n.id for n in core.others)
    if not removed:
        members = sorted([*members, node_id])
    return {
        "node": node_id,
        "role": ROLES.get(role, str(role)),
        "term": core.term,
        "leader": leader.id if leader is not None else None,
        "commit_index": core.commit_index,
        "last_applied": core.last_applied,
        "log_len": len(journal),
        "members": members,
        "removed": removed,
        "running": live,
        "delivered": applier.applied,
        "journal_syncs": journal.syncs,
        "dropped_frames": wire.dropped_unknown + wire.dropped_invalid,
        "refused_messages": wire.refused,
        "refused_commands": wire.refused_commands,
        "skipped_resent_entries": wire.skipped_entries,
        "tick_errors": tick_errors + compaction.failures,
        "apply_error": applier.error,
        "pre_vote_rounds": pre_vote.rounds,
        "pre_votes_granted": pre_vote.granted,
        "pre_votes_refused": pre_vote.refused,
        "log_start": journal[0][1] if len(journal) else 0,
        "snapshot_index": compaction.index,
        "compactions": compaction.compactions,
        "snapshots_installed": compaction.installs,
        "snapshot_offers_deferred": compaction.offers_deferred,
        "held_append_entries": wire.held,
    }
