"""Pre-vote as pure functions: no cluster, no clock, every branch of the rule."""

from __future__ import annotations

from typing import Any

from consensus import prevote
from consensus.prevote import ASK, CAMPAIGN, GO, PreVote, on_response, on_timeout, would_vote

E = 0.15  # election_min


def timeout(state: PreVote, now: float, voters: int = 3, term: int = 4) -> tuple[PreVote, str]:
    return on_timeout(state, me="a", term=term, voters=voters, now=now, election_min=E)


def ask(term: int, log: tuple[int, int] = (3, 10)) -> dict[str, Any]:
    return {"type": "pre_vote", "term": term, "last_log_term": log[0], "last_log_index": log[1]}


def test_a_timeout_starts_a_round_for_the_next_term_and_asks() -> None:
    state, verdict = timeout(PreVote(), now=100.0)
    assert verdict == ASK
    assert state.term == 5 and state.grants == {"a"} and state.rounds == 1
    assert state.cleared_until == 0.0
    assert prevote.request(state, (3, 10)) == ask(5)
    again, verdict = timeout(state, now=100.3, term=4)
    assert verdict == ASK and again.rounds == 2 and again.grants == {"a"}  # a fresh round


def test_a_lone_voter_campaigns_at_once() -> None:
    state, verdict = timeout(PreVote(), now=100.0, voters=1)
    assert verdict == CAMPAIGN
    assert state.cleared_until == 100.0 + E


def test_a_majority_of_yes_clears_one_election() -> None:
    state, _ = timeout(PreVote(), now=100.0, voters=3)
    yes = {"type": "pre_vote_response", "term": 5, "granted": True}
    state, campaign = on_response(
        state, "b", yes, is_leader=False, voters=3, now=100.01, election_min=E
    )
    assert campaign and state.grants == {"a", "b"}
    assert state.cleared_until == 100.01 + E
    # another yes after the majority changes nothing
    state, campaign = on_response(
        state, "c", yes, is_leader=False, voters=3, now=100.02, election_min=E
    )
    assert not campaign and state.cleared_until == 100.01 + E
    # the timer that runs out within the clearance goes ahead once, then the gate closes
    state, verdict = timeout(state, now=100.05)
    assert verdict == GO and state.cleared_until == 0.0
    _, verdict = timeout(state, now=100.06)
    assert verdict == ASK


def test_a_clearance_lapses() -> None:
    state = PreVote(term=5, grants=frozenset({"a", "b"}), cleared_until=100.0)
    state, verdict = timeout(state, now=100.0)  # not before ``cleared_until``
    assert verdict == ASK and state.term == 5 and state.grants == {"a"}


def test_responses_that_do_not_count() -> None:
    state, _ = timeout(PreVote(), now=100.0, voters=5)
    no = {"type": "pre_vote_response", "term": 5, "granted": False}
    stale = {"type": "pre_vote_response", "term": 4, "granted": True}
    yes = {"type": "pre_vote_response", "term": 5, "granted": True}
    for sender, message, leader in (("b", no, False), ("c", stale, False), ("d", yes, True)):
        after, campaign = on_response(
            state, sender, message, is_leader=leader, voters=5, now=100.01, election_min=E
        )
        assert after == state and not campaign
    # the same voter twice is one vote: 2 of 5 is no majority
    state, _ = on_response(state, "b", yes, is_leader=False, voters=5, now=100.01, election_min=E)
    state, campaign = on_response(
        state, "b", yes, is_leader=False, voters=5, now=100.02, election_min=E
    )
    assert not campaign and state.grants == {"a", "b"}
    state, campaign = on_response(
        state, "c", yes, is_leader=False, voters=5, now=100.03, election_min=E
    )
    assert campaign


def answer(message: dict[str, Any], **view: Any) -> tuple[PreVote, dict[str, Any]]:
    inputs: dict[str, Any] = {
        "term": 4,
        "log": (3, 10),
        "is_leader": False,
        "leader_heard_at": 0.0,
        "now": 100.0,
        "election_min": E,
    }
    return prevote.answer(PreVote(), message, **{**inputs, **view})


def test_answers_and_their_counters() -> None:
    state, response = answer(ask(5))
    assert response == {"type": "pre_vote_response", "term": 5, "granted": True}
    assert (state.granted, state.refused) == (1, 0)
    for message, view in (
        (ask(4), {}),  # not ahead of my term
        (ask(5, (3, 9)), {}),  # its log is behind mine
        (ask(5), {"is_leader": True}),  # I lead
        (ask(5), {"leader_heard_at": 100.0 - E / 2}),  # I heard a leader recently
    ):
        state, response = answer(message, **view)
        assert response["granted"] is False and response["term"] == message["term"]
        assert (state.granted, state.refused) == (0, 1)
    _, response = answer(ask(5), leader_heard_at=100.0 - E)  # exactly election_min ago
    assert response["granted"] is True


def test_would_vote_compares_logs_by_term_then_index() -> None:
    base: dict[str, Any] = {"candidate_term": 5, "term": 4, "log": (3, 10), "leader_alive": False}
    assert would_vote(candidate_log=(4, 1), **base)
    assert would_vote(candidate_log=(3, 10), **base)
    assert not would_vote(candidate_log=(2, 99), **base)
