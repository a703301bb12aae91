"""The Voter: a peer's proposal is re-tested on this node, then voted on through the ledger.

The parts are the real ones a node runs (the Validator actor in a real sandbox, the
ledger's state machine over a SQLite store); only Raft's ordering is replaced by
applying each proposed entry in turn, as a one-node ledger would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pykka
import pytest
from swarmkit import TINY, candidate

from actors.supervisor import Supervisor
from actors.validator import Validator
from actors.voter import Votes
from consensus.ledger import Applied, LedgerState, cycle_entry, register_entry
from events.store import GenomeStore
from evolution.tree import version_id
from runtime.genome_files import load_genome
from runtime.sandbox import Sandbox

MEMBERS = ["node-1", "node-2", "node-3"]
#: The voting node's clock: a time no test run happens at, so its stamp is recognisable.
AT = datetime(2031, 2, 3, 4, 5, 6, tzinfo=UTC)
GOOD = ('"""How many of ``words`` are common words."""', '"""Count the common words."""')
BAD = ("total += 1", "total += 2")


class Ledger:
    """The ledger's state machine, each proposed entry applied in turn (one-node Raft's order)."""

    def __init__(self, store: GenomeStore) -> None:
        self.state = LedgerState(store, MEMBERS)
        self.index = 0
        self.lock = threading.Lock()

    def propose(self, data: bytes) -> int:
        return self.commit(data).raft_index

    def commit(self, data: bytes) -> Applied:
        with self.lock:
            self.index += 1
            return self.state.apply(self.index, data)


class Voting:
    def __init__(self, root: Path) -> None:
        self.store = GenomeStore.open(f"sqlite:///{root / 'store.db'}")
        self.sandbox = Sandbox(root / "sandbox")
        self.supervisor = Supervisor()
        sandbox = self.sandbox
        self.supervisor.start("validator", lambda: Validator.start(sandbox))
        self.ledger = Ledger(self.store)
        self.stopping = threading.Event()
        self.votes = Votes(
            "node-1",
            self.store,
            lambda message: self.supervisor.ask("validator", message),
            self.ledger.propose,
            AT.timestamp,
            self.stopping,
        )
        _, self.tree = load_genome(TINY)
        self.ledger.commit(
            register_entry("tiny", self.tree["genome.toml"], self.tree, 1.0, "node-2", time.time())
        )

    def propose(self, edit: tuple[str, str], cycle: int = 1) -> tuple[str, Applied]:
        """node-2 proposes an edit of the head (with its own yes vote); returns its version."""
        _, adoption = candidate(self.store.head("tiny").tree, *edit)
        entry = cycle_entry("tiny", "node-2", cycle, 3, [], [], adoption, time.time())
        return adoption.version, self.ledger.commit(entry)

    def my_votes(self) -> list[tuple[bool, str, datetime]]:
        return [
            (e.data["yes"], e.data["reason"], e.time)
            for e in self.store.log(genome="tiny")
            if e.type == "VoteCast" and e.node == "node-1"
        ]

    def wait_votes(self, count: int, timeout: float = 60.0) -> list[tuple[bool, str, datetime]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            votes = self.my_votes()
            if len(votes) >= count:
                return votes
            time.sleep(0.05)
        raise AssertionError(f"node-1 cast {len(self.my_votes())} votes, not {count}")

    def close(self) -> None:
        self.stopping.set()
        self.votes.stop()
        self.votes.join(timeout=30)
        self.supervisor.stop_all()
        self.sandbox.close()
        self.store.close()


@pytest.fixture
def voting(tmp_path: Path) -> Iterator[Voting]:
    handle = Voting(tmp_path)
    try:
        yield handle
    finally:
        handle.close()
    assert pykka.ActorRegistry.get_all() == [], "the Voter and the Validator stopped"


def test_votes_no_on_a_patch_that_fails_the_tests_stamped_by_its_clock(voting: Voting) -> None:
    voting.votes.start()
    parent = voting.store.head("tiny").version
    version, applied = voting.propose(BAD)
    voting.votes.after_apply([applied])
    [(yes, reason, at)] = voting.wait_votes(1)
    assert not yes and reason.startswith("tests fail")
    assert at == AT, "the vote entry carries the voting node's clock"
    assert voting.votes.counters["votes"] == 1
    # node-2's yes and node-1's no: node-3 still decides, the head has not moved.
    head = voting.store.head("tiny")
    assert head.version == parent
    [waiting] = head.proposals.values()
    assert waiting["version"] == version and waiting["votes"] == {"node-2": True, "node-1": False}


def test_votes_yes_on_a_patch_that_passes_and_the_majority_adopts(voting: Voting) -> None:
    voting.votes.start()
    version, applied = voting.propose(GOOD)
    voting.votes.after_apply([applied])
    [(yes, reason, at)] = voting.wait_votes(1)
    assert yes and reason == "tests pass" and at == AT
    head = voting.store.head("tiny")
    assert head.version == version == version_id(head.tree)
    assert not head.proposals


def test_a_proposal_waiting_at_start_is_validated_and_queued_once(voting: Voting) -> None:
    version, applied = voting.propose(GOOD)  # committed while this node's Voter was down
    [pid] = applied.waiting
    voting.votes.start()
    [(yes, _, _)] = voting.wait_votes(1)
    assert yes and voting.store.head("tiny").version == version
    # Queued at start and voted on: the same proposal is never queued again.
    assert not voting.votes.offer("tiny", pid, version)
    voting.votes.after_apply([applied])
    assert voting.votes.counters["votes"] == 1


def test_stop_drains_the_queue_without_voting(voting: Voting) -> None:
    voting.votes.start()
    _, applied = voting.propose(BAD)
    voting.stopping.set()  # the node is stopping before the Voter reaches the proposal
    voting.votes.after_apply([applied])
    voting.votes.stop()
    voting.votes.join(timeout=30)
    assert voting.my_votes() == [] and voting.votes.counters["votes"] == 0
