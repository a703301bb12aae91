"""Pre-vote (Raft thesis §9.6; etcd's PreVote) as pure functions of their inputs and ``now``.

pysyncobj campaigns as soon as its election timer runs out, bumping its term; a node
cut off from the others (or just added, or restarted behind) would then come back with
a higher term and depose a healthy leader.  So when the timer runs out the engine first
asks every voter, without touching any term, whether it *would* vote; only on a
majority of yes does the election go ahead.  A leadership transfer (``timeout_now``
from the leader) campaigns at once, as Raft intends.

The functions here take the node's :class:`PreVote` state and what the engine read from
its Raft core, and return the next state and what to do; the engine does the I/O.  So
the rule is tested without a cluster or a clock (``tests/test_prevote.py``).
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

#: :func:`on_timeout`'s verdicts.
Verdict = Literal["go", "campaign", "ask"]
#: a majority said yes within the last ``election_min``: let the expired timer campaign
GO: Verdict = "go"
#: this node alone is a majority: expire the election timer, campaign in this tick
CAMPAIGN: Verdict = "campaign"
#: restart the election timer and send :func:`request` to every voter
ASK: Verdict = "ask"


class PreVote(NamedTuple):
    """One node's pre-vote round (the term it would campaign for, who said yes) and counters."""

    term: int = 0
    grants: frozenset[str] = frozenset()
    #: a majority said yes: the election may run until then (0.0: not cleared)
    cleared_until: float = 0.0
    rounds: int = 0
    granted: int = 0
    refused: int = 0


def would_vote(
    *,
    candidate_term: int,
    candidate_log: tuple[int, int],
    term: int,
    log: tuple[int, int],
    leader_alive: bool,
) -> bool:
    """Raft's pre-vote answer: could this candidate win my vote, and do I need a new leader?

    Yes only if its proposed term is ahead of mine, its log (last term, last index) is at
    least as up to date as mine, and I have not heard from a live leader within the
    minimum election timeout.
    """
    return candidate_term > term and candidate_log >= log and not leader_alive


def _won(grants: frozenset[str], voters: int) -> bool:
    return len(grants) * 2 > voters


def on_timeout(
    state: PreVote, *, me: str, term: int, voters: int, now: float, election_min: float
) -> tuple[PreVote, Verdict]:
    """The election timer of a follower or candidate ran out: campaign, or ask first?

    ``term`` is this node's current term, ``voters`` the voting members counting this
    node.  A new round asks for ``term + 1``; this node's own yes counts.
    """
    if now < state.cleared_until:
        return state._replace(cleared_until=0.0), GO
    state = state._replace(term=term + 1, grants=frozenset({me}), rounds=state.rounds + 1)
    if _won(state.grants, voters):
        return state._replace(cleared_until=now + election_min), CAMPAIGN
    return state, ASK


def request(state: PreVote, log: tuple[int, int]) -> dict[str, Any]:
    """The pre_vote message of the current round; ``log`` is (last term, last index)."""
    return {
        "type": "pre_vote",
        "term": state.term,
        "last_log_index": log[1],
        "last_log_term": log[0],
    }


def answer(
    state: PreVote,
    message: dict[str, Any],
    *,
    term: int,
    log: tuple[int, int],
    is_leader: bool,
    leader_heard_at: float,
    now: float,
    election_min: float,
) -> tuple[PreVote, dict[str, Any]]:
    """A peer's pre_vote: this node's response, counted.

    The leader is alive if this node leads, or heard a leader's append_entries less than
    ``election_min`` ago (``leader_heard_at`` on the same clock as ``now``).
    """
    granted = would_vote(
        candidate_term=message["term"],
        candidate_log=(message["last_log_term"], message["last_log_index"]),
        term=term,
        log=log,
        leader_alive=is_leader or now - leader_heard_at < election_min,
    )
    if granted:
        state = state._replace(granted=state.granted + 1)
    else:
        state = state._replace(refused=state.refused + 1)
    return state, {"type": "pre_vote_response", "term": message["term"], "granted": granted}


def on_response(
    state: PreVote,
    sender: str,
    message: dict[str, Any],
    *,
    is_leader: bool,
    voters: int,
    now: float,
    election_min: float,
) -> tuple[PreVote, bool]:
    """A peer's pre_vote_response; True when it completes a majority: campaign now."""
    if is_leader or not message["granted"] or message["term"] != state.term:
        return state, False
    state = state._replace(grants=state.grants | {sender})
    if _won(state.grants, voters) and not state.cleared_until:
        return state._replace(cleared_until=now + election_min), True
    return state, False
