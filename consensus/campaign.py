"""The engine's side of pre-vote: read the Raft core, act on :mod:`consensus.prevote`'s answers.

The rule is pure (:mod:`consensus.prevote`); this is the I/O around it, on the driver
thread: when to ask, what to send, and when to let pysyncobj campaign.  The clock is
handed in.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from consensus import prevote
from consensus._pysyncobj import Core
from consensus.wire import RaftNode, _RaftWire


class Campaign:
    """One node's pre-vote, between its core and its wire (driver thread only)."""

    def __init__(
        self, node_id: str, election_min: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.node_id = node_id
        self.election_min = election_min
        self._clock = clock
        self.state = prevote.PreVote()

    def gate(self, core: Core, wire: _RaftWire) -> None:
        """Before each tick: hold an election pysyncobj is about to start until a majority
        says it could win."""
        if not core.election_due():
            return
        self.state, verdict = prevote.on_timeout(
            self.state,
            me=self.node_id,
            term=core.term,
            voters=len(wire.voters()) + 1,
            now=self._clock(),
            election_min=self.election_min,
        )
        if verdict == prevote.CAMPAIGN:
            core.campaign_now()
        elif verdict == prevote.ASK:
            core.restart_election_timer()
            ask = prevote.request(self.state, core.last_log())
            for node in wire.voters():
                wire.send(node, dict(ask))

    def on_message(
        self, core: Core, wire: _RaftWire, node: RaftNode, message: dict[str, Any]
    ) -> None:
        """A pre_vote (answer it) or a pre_vote_response (count it) from ``node``."""
        if message["type"] == "pre_vote":
            self.state, response = prevote.answer(
                self.state,
                message,
                term=core.term,
                log=core.last_log(),
                is_leader=core.is_leader,
                leader_heard_at=wire.leader_heard_at,
                now=self._clock(),
                election_min=self.election_min,
            )
            wire.send(node, response)
            return
        self.state, campaign = prevote.on_response(
            self.state,
            node.id,
            message,
            is_leader=core.is_leader,
            voters=len(wire.voters()) + 1,
            now=self._clock(),
            election_min=self.election_min,
        )
        if campaign:
            core.campaign_now()
