"""Typed ledger entries (consensus/entries.py): the bytes they make, and how bad ones fail.

The hex strings below were produced by the ledger's encoders before the entries were
typed; journals and peers hold those bytes, so the encoding may never change.
"""

from __future__ import annotations

import logging
from typing import Any

import msgpack
import pytest

from consensus import entries as E
from consensus import ledger as L
from consensus.approvals import Approval, ApproverList, approval_entry, approvers_entry
from events.records import Adoption, CandidateRecord, Held
from events.store import GenomeStore
from evolution.errors import ConsensusError

RECORD = CandidateRecord(
    candidate="c1",
    parent="p0",
    patch="--- a\n+++ b\n",
    mutator="memoize",
    kind="hot",
    verdict="adopt",
    reasons=["fast"],
    ratio=1.5,
    low=1.4,
    high=1.6,
    tests_passed=True,
)
HELD = Held(
    candidate="c2",
    parent="p0",
    patch="-x\n+y\n",
    mutator="tune",
    kind="constant",
    reasons=["touches tests"],
    evidence={"n": 3},
)
ADOPTION = Adoption(
    version="v1",
    parent="p0",
    patch="-a\n+b\n",
    mutator="memoize",
    kind="hot",
    fitness_before=1.0,
    fitness_after=0.5,
    ratio=2.0,
    low=1.9,
    high=2.1,
    evidence={"note": "ok"},
)

P99 = "green p99 0.120 s is 2.4x blue's 0.050 s (limit 1.5x)"

PINNED = {
    "register": (
        "87a474797065a87265676973746572a667656e6f6d65a167a86d616e6966657374a95b67656e6f6d655d0a"
        "a47472656582a4622e7079a678203d20310aa4612e7079a0a76669746e657373cb3ff0000000000000a46e"
        "6f6465a66e6f64652d31a26174cb408f400000000000"
    ),
    "register_none": (
        "87a474797065a87265676973746572a667656e6f6d65a167a86d616e6966657374a16da47472656580a766"
        "69746e657373c0a46e6f6465a66e6f64652d31a26174cd03e8"
    ),
    "cycle": (
        "89a474797065a56379636c65a667656e6f6d65a167a46e6f6465a66e6f64652d31a56379636c6503a47365"
        "656407a96576616c7561746564918ba963616e646964617465a26331a6706172656e74a27030a570617463"
        "68ac2d2d2d20610a2b2b2b20620aa76d757461746f72a76d656d6f697a65a46b696e64a3686f74a7766572"
        "64696374a561646f7074a7726561736f6e7391a466617374a5726174696fcb3ff8000000000000a36c6f77"
        "cb3ff6666666666666a468696768cb3ff999999999999aac74657374735f706173736564c3a468656c6491"
        "87a963616e646964617465a26332a6706172656e74a27030a57061746368a62d780a2b790aa76d75746174"
        "6f72a474756e65a46b696e64a8636f6e7374616e74a7726561736f6e7391ad746f75636865732074657374"
        "73a865766964656e636581a16e03a870726f706f73616c8ca776657273696f6ea27631a6706172656e74a2"
        "7030a57061746368a62d610a2b620aa76d757461746f72a76d656d6f697a65a46b696e64a3686f74ae6669"
        "746e6573735f6265666f7265cb3ff0000000000000ad6669746e6573735f6166746572cb3fe00000000000"
        "00a5726174696fcb4000000000000000a36c6f77cb3ffe666666666666a468696768cb4000cccccccccccd"
        "a865766964656e636581a46e6f7465a26f6ba26964b036616130363966663364633335626433a26174cb40"
        "8f4c0000000000"
    ),
    "cycle_none": (
        "89a474797065a56379636c65a667656e6f6d65a167a46e6f6465a66e6f64652d32a56379636c6504a47365"
        "656408a96576616c756174656490a468656c6490a870726f706f73616cc0a26174cb408f500000000000"
    ),
    "vote": (
        "88a474797065a4766f7465a667656e6f6d65a167a870726f706f73616cb030313233343536373839616263"
        "646566a776657273696f6ea27631a46e6f6465a66e6f64652d32a3796573c2a6726561736f6ead74657374"
        "5f61206661696c6564a26174cb408f5a0000000000"
    ),
    "rollback": (
        "86a474797065a8726f6c6c6261636ba667656e6f6d65a167a2746fa27630a6726561736f6eaa7265677265"
        "7373696f6ea46e6f6465a66e6f64652d33a26174cb408f600000000000"
    ),
    "members": (
        "84a474797065a76d656d62657273a76d656d6265727392a66e6f64652d31a66e6f64652d33a46e6f6465a6"
        "6e6f64652d31a26174cb408f680000000000"
    ),
    "rollout": (
        "8ba474797065a7726f6c6c6f7574a667656e6f6d65a167a46e6f6465a66e6f64652d32a776657273696f6e"
        "a27631a4626c7565a27630a57068617365a761626f72746564a47374657002a6776569676874cb3fb99999"
        "9999999aa6726573756c74a64661696c6564a6726561736f6ed935677265656e2070393920302e31323020"
        "7320697320322e347820626c7565277320302e303530207320286c696d697420312e357829a26174cb408f"
        "740000000000"
    ),
    # issue 13: a started step with the deploy's own plan (consensus/rollout_entry.py)
    "rollout_plan": (
        "8ca474797065a7726f6c6c6f7574a667656e6f6d65a167a46e6f6465a66e6f64652d32a776657273696f6ea2"
        "7631a4626c7565a27630a57068617365a773746172746564a47374657000a6776569676874cb000000000000"
        "0000a6726573756c74a0a6726561736f6eb06465706c6f7965642062792068616e64a26174cb408f80000000"
        "0000a4706c616e82a87374726174656779a663616e617279a5737465707393cb3ff0000000000000cb404900"
        "0000000000cb4059000000000000"
    ),
    # issue 12: a person's decision on a held candidate (consensus/approvals.py)
    "approval": (
        "87a474797065a8617070726f76616ca667656e6f6d65a167a963616e646964617465a26332a86465636973"
        "696f6ea7617070726f7665a8617070726f766572a5616c696365a6726561736f6ead726561642074686520"
        "64696666a26174cb408f7c0000000000"
    ),
    # issue 12's gap: the admin's list of approvers with their keys, and the quorum
    "approvers": (
        "85a474797065a9617070726f76657273a46b65797382a5616c696365d92c41414141414141414141414141"
        "4141414141414141414141414141414141414141414141414141414141413da3626f62d92c424242424242"
        "424242424242424242424242424242424242424242424242424242424242424242424242423da671756f72"
        "756d02a46e6f6465a561646d696ea26174cb408f880000000000"
    ),
}


def made_by_the_ledger() -> dict[str, bytes]:
    """The same entries through the functions node.py calls."""
    return {
        "register": L.register_entry(
            "g", "[genome]\n", {"b.py": "x = 1\n", "a.py": ""}, 1.0, "node-1", 1000.0
        ),
        "register_none": L.register_entry("g", "m", {}, None, "node-1", 1000),
        "cycle": L.cycle_entry("g", "node-1", 3, 7, [RECORD], [HELD], ADOPTION, 1001.5),
        "cycle_none": L.cycle_entry("g", "node-2", 4, 8, [], [], None, 1002.0),
        "vote": L.vote_entry(
            "g", "0123456789abcdef", "v1", "node-2", False, "test_a failed", 1003.25
        ),
        "rollback": L.rollback_entry("g", "v0", "regression", "node-3", 1004.0),
        "members": L.members_entry(["node-3", "node-1", "node-3"], "node-1", 1005.0),
        "rollout": E.rollout_entry(
            "g", "node-2", "v1", "v0", "aborted", 2, 0.1, "Failed", P99, 1006.5
        ),
        "rollout_plan": E.rollout_entry(
            "g",
            "node-2",
            "v1",
            "v0",
            "started",
            0,
            0.0,
            "",
            "deployed by hand",
            1008.0,
            plan={"strategy": "canary", "steps": [1.0, 50.0, 100.0]},
        ),  # fmt: skip
        "approval": approval_entry("g", "c2", "approve", "alice", "read the diff", 1007.5),
        "approvers": approvers_entry({"bob": "B" * 43 + "=", "alice": "A" * 43 + "="}, 2, 1009.0),
    }


TYPED: dict[str, E.Entry] = {
    "register": E.Register(
        "g", "[genome]\n", {"b.py": "x = 1\n", "a.py": ""}, 1.0, "node-1", 1000.0
    ),
    "register_none": E.Register("g", "m", {}, None, "node-1", 1000),
    "cycle": E.Cycle(
        "g", "node-1", 3, 7, [RECORD], [HELD], E.Proposal("6aa069ff3dc35bd3", ADOPTION), 1001.5
    ),
    "cycle_none": E.Cycle("g", "node-2", 4, 8, [], [], None, 1002.0),
    "vote": E.Vote("g", "0123456789abcdef", "v1", "node-2", False, "test_a failed", 1003.25),
    "rollback": E.Rollback("g", "v0", "regression", "node-3", 1004.0),
    "members": E.Members(["node-1", "node-3"], "node-1", 1005.0),
    "rollout": E.Rollout("g", "node-2", "v1", "v0", "aborted", 2, 0.1, "Failed", P99, 1006.5),
    "rollout_plan": E.Rollout(
        "g",
        "node-2",
        "v1",
        "v0",
        "started",
        0,
        0.0,
        "",
        "deployed by hand",
        1008.0,
        {"strategy": "canary", "steps": [1.0, 50.0, 100.0]},
    ),  # fmt: skip
    "approval": Approval("g", "c2", "approve", "alice", "read the diff", 1007.5),
    "approvers": ApproverList({"alice": "A" * 43 + "=", "bob": "B" * 43 + "="}, 2, "admin", 1009.0),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_the_bytes_of_every_entry_type_are_pinned(name: str) -> None:
    assert made_by_the_ledger()[name].hex() == PINNED[name]
    assert E.encode(TYPED[name]).hex() == PINNED[name]


@pytest.mark.parametrize("name", sorted(PINNED))
def test_pinned_bytes_decode_to_the_typed_entry(name: str) -> None:
    entry = E.decode(bytes.fromhex(PINNED[name]))
    assert entry == TYPED[name] and type(entry) is type(TYPED[name])
    assert E.encode(entry).hex() == PINNED[name]
    assert E.kind_of(entry) == name.split("_")[0]


def test_the_proposal_id_is_pinned() -> None:
    assert (
        L.proposal_id("g", "node-1", 3, "v1")
        == "6aa069ff3dc35bd3"
        == E.proposal_id("g", "node-1", 3, "v1")
    )


def test_fields_a_proposer_may_leave_out_take_their_old_defaults() -> None:
    bare = {"type": "cycle", "genome": "g", "node": "n", "cycle": 1, "seed": 2, "at": 5}
    assert E.parse(bare) == E.Cycle("g", "n", 1, 2, [], [], None, 5)
    assert E.parse({**bare, "evaluated": None, "held": None}).evaluated == []
    vote = {"type": "vote", "genome": "g", "proposal": "p", "version": "v", "node": "n"}
    assert E.parse({**vote, "yes": True, "at": 1.0}).reason == ""
    assert (
        E.parse({"type": "rollback", "genome": "g", "to": "v", "node": "n", "at": 1}).reason == ""
    )
    # extra top-level fields are ignored (a newer proposer may add some)
    assert E.parse({**bare, "new_field": [1]}) == E.parse(bare)
    # a record's field with a default may be left out, as Held(**fields) allowed
    held = {k: v for k, v in HELD.__dict__.items() if k != "evidence"}
    assert E.parse({**bare, "held": [held]}).held[0].evidence == {}  # type: ignore[union-attr]


def _good(kind: str) -> dict[str, Any]:
    return msgpack.unpackb(bytes.fromhex(PINNED[kind]), raw=False)


def _without(raw: dict[str, Any], *path: Any) -> dict[str, Any]:
    target: Any = raw
    for step in path[:-1]:
        target = target[step]
    del target[path[-1]]
    return raw


def _with(raw: dict[str, Any], value: Any, *path: Any) -> dict[str, Any]:
    target: Any = raw
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return raw


MISSING = [
    ("register", ("genome",), "genome"),
    ("register", ("manifest",), "manifest"),
    ("register", ("tree",), "tree"),
    ("register", ("fitness",), "fitness"),
    ("register", ("node",), "node"),
    ("register", ("at",), "at"),
    ("cycle", ("cycle",), "cycle"),
    ("cycle", ("seed",), "seed"),
    ("cycle", ("node",), "node"),
    ("cycle", ("evaluated", 0, "ratio"), "evaluated[0].ratio"),
    ("cycle", ("held", 0, "reasons"), "held[0].reasons"),
    ("cycle", ("proposal", "id"), "proposal.id"),
    ("cycle", ("proposal", "patch"), "proposal.patch"),
    ("vote", ("proposal",), "proposal"),
    ("vote", ("version",), "version"),
    ("vote", ("yes",), "yes"),
    ("rollback", ("to",), "to"),
    ("rollout", ("version",), "version"),
    ("rollout", ("phase",), "phase"),
    ("rollback", ("genome",), "genome"),
    ("members", ("members",), "members"),
    ("members", ("at",), "at"),
    ("approval", ("candidate",), "candidate"),
    ("approval", ("decision",), "decision"),
    ("approval", ("approver",), "approver"),
]

WRONG = [
    ("register", ("genome",), 7, "genome", "a string, not int"),
    ("register", ("tree",), ["a.py"], "tree", "a map, not list"),
    ("register", ("tree", "a.py"), 1, "tree['a.py']", "a string, not int"),
    ("register", ("fitness",), "fast", "fitness", "a number or nil, not str"),
    ("register", ("at",), "noon", "at", "a number, not str"),
    ("cycle", ("cycle",), "3", "cycle", "an integer, not str"),
    ("cycle", ("seed",), 7.5, "seed", "an integer, not float"),
    ("cycle", ("evaluated",), {}, "evaluated", "a list, not dict"),
    ("cycle", ("evaluated", 0), "c1", "evaluated[0]", "a map, not str"),
    ("cycle", ("evaluated", 0, "tests_passed"), 1, "evaluated[0].tests_passed", "a boolean"),
    ("cycle", ("evaluated", 0, "reasons", 0), None, "evaluated[0].reasons[0]", "a string, not nil"),
    ("cycle", ("held", 0, "evidence"), [], "held[0].evidence", "a map, not list"),
    ("cycle", ("proposal",), "v1", "proposal", "a map, not str"),
    ("cycle", ("proposal", "id"), 5, "proposal.id", "a string, not int"),
    ("cycle", ("proposal", "ratio"), "2x", "proposal.ratio", "a number or nil, not str"),
    ("cycle", ("at",), None, "at", "a number, not nil"),
    ("vote", ("yes",), "yes", "yes", "a boolean, not str"),
    ("vote", ("reason",), 3, "reason", "a string, not int"),
    ("vote", ("proposal",), b"p", "proposal", "a string, not bytes"),
    ("rollback", ("to",), None, "to", "a string, not nil"),
    ("rollout", ("step",), 1.5, "step", "an integer, not float"),
    ("rollout", ("weight",), "10%", "weight", "a number, not str"),
    ("members", ("members",), "node-1", "members", "a list, not str"),
    ("members", ("members", 0), 1, "members[0]", "a string, not int"),
    ("approval", ("approver",), None, "approver", "a string, not nil"),
    ("approval", ("at",), "now", "at", "a number, not str"),
]


@pytest.mark.parametrize(("kind", "path", "field"), MISSING)
def test_a_missing_field_is_named(kind: str, path: tuple[Any, ...], field: str) -> None:
    data = msgpack.packb(_without(_good(kind), *path), use_bin_type=True)
    with pytest.raises(ConsensusError) as caught:
        E.decode(data)
    assert str(caught.value) == f"{kind} entry: field '{field}' is missing"


@pytest.mark.parametrize(("kind", "path", "value", "field", "problem"), WRONG)
def test_a_field_of_the_wrong_type_is_named(
    kind: str, path: tuple[Any, ...], value: Any, field: str, problem: str
) -> None:
    data = msgpack.packb(_with(_good(kind), value, *path), use_bin_type=True)
    with pytest.raises(ConsensusError, match=r"^(\S+) entry: field '(.+)' should be ") as caught:
        E.decode(data)
    assert str(caught.value).startswith(f"{kind} entry: field '{field}' should be {problem}")


def test_unknown_fields_in_a_nested_record_are_refused() -> None:
    raw = _with(_good("cycle"), "x", "evaluated", 0, "surprise")
    with pytest.raises(
        ConsensusError, match=r"field 'evaluated\[0\]' has an unknown field 'surprise'"
    ):
        E.parse(raw)
    raw = _with(_good("cycle"), "x", "proposal", "surprise")
    with pytest.raises(ConsensusError, match=r"field 'proposal' has an unknown field 'surprise'"):
        E.parse(raw)


def test_bytes_that_are_no_entry_fail_as_consensus_errors() -> None:
    for data, match in [
        (b"\xc1", "does not decode as msgpack"),
        (msgpack.packb([1, 2]), "not a map with a 'type'"),
        (msgpack.packb({"type": 3}), "not a map with a 'type'"),
        (msgpack.packb({"type": "teleport"}), "unknown entry type 'teleport'"),
        (b"\x00" * (E.MAX_ENTRY + 1), "over the"),
    ]:
        with pytest.raises(ConsensusError, match=match):
            E.decode(data)


# ---- through the state machine: skipped alike on every node, the field in the reason ----


def _state(members: list[str]) -> L.LedgerState:
    return L.LedgerState(GenomeStore.open("memory://"), members)


MEMBERS = ["node-1", "node-2", "node-3"]
GONE = object()  # the field is left out
BASE = {"genome.toml": '[genome]\nname = "g"\n', "core.py": "def a():\n    return 1\n"}


@pytest.mark.parametrize(
    ("kind", "path", "value", "field"),
    [(k, p, v, f) for k, p, v, f, _ in WRONG] + [(k, p, GONE, f) for k, p, f in MISSING],
)
def test_a_malformed_entry_is_skipped_the_same_way_and_the_log_names_the_field(
    kind: str, path: tuple[Any, ...], value: Any, field: str, caplog: pytest.LogCaptureFixture
) -> None:
    raw = _good(kind)
    raw = _without(raw, *path) if value is GONE else _with(raw, value, *path)
    bad = msgpack.packb(raw, use_bin_type=True)
    register = L.register_entry("g", BASE["genome.toml"], BASE, 1.0, "node-1", 1000.0)
    states = [_state(MEMBERS), _state(MEMBERS)]
    with caplog.at_level(logging.WARNING, logger="consensus.ledger"):
        results = [s.apply_batch([(1, register), (2, bad)]) for s in states]
    assert results[0] == results[1]
    assert results[0][1].written is False and results[0][1].kind == kind
    assert all(s.rejected_entries == 1 and s.applied_index == 2 for s in states)
    assert all(s.members == MEMBERS for s in states), "a bad members entry changes nothing"
    assert [e.type for e in states[0].store.log()] == ["Registered"]
    assert f"ledger entry 2 ({kind}) skipped on every node: {kind} entry: field '{field}'" in (
        caplog.text
    )
    for s in states:
        s.store.close()


def test_a_redelivered_malformed_entry_is_not_counted_again() -> None:
    state = _state(MEMBERS)
    bad = msgpack.packb({"type": "vote", "genome": "g"})
    first = state.apply_batch([(1, bad)])
    again = state.apply_batch([(1, bad)])
    assert state.rejected_entries == 1 and first[0].written is again[0].written is False
    state.store.close()


# ---- signed entries (issue 9): the same bytes with ``sig`` last -------------------------

#: Ed25519 signatures are deterministic, so a signed entry's bytes can be pinned too.
SIGNED_PINNED = {
    "vote": (
        "89a474797065a4766f7465a667656e6f6d65a167a870726f706f73616cb030313233343536373839"
        "616263646566a776657273696f6ea27631a46e6f6465a66e6f64652d32a3796573c2a6726561736f"
        "6ead746573745f61206661696c6564a26174cb408f5a0000000000a3736967c44009f17f3aafbeb3"
        "67f9fefecbb8d3dde0d098bcbbbf3be28f2261a6dd273a3bd39bbe5a9fa99983bdcb235d790cf3f8"
        "eb554e088d9d935d17001dfce99a462d02"
    ),
    "members": (
        "86a474797065a76d656d62657273a76d656d6265727392a66e6f64652d31a66e6f64652d34a46e6f"
        "6465a561646d696ea26174cb408f680000000000a46b65797381a66e6f64652d34d92c4141414141"
        "41414141414141414141414141414141414141414141414141414141414141414141414141413da3"
        "736967c440f720185d6c0cf5c39221c29edc503d06ec8af110fa740bf10500827f3de3610c18a475"
        "e5ff435dcbd10fe43dc9bb5c370fe422dbbca8e5578e7d4470eac7580a"
    ),
}


def signed_entries() -> dict[str, bytes]:
    from consensus.signing import Signer

    node, admin = Signer("node-2", bytes(range(32))), Signer("admin", bytes(range(1, 33)))
    return {
        "vote": L.vote_entry(
            "g", "0123456789abcdef", "v1", "node-2", False, "test_a failed", 1003.25, signer=node
        ),
        "members": L.members_entry(
            ["node-1", "node-4"], "admin", 1005.0, keys={"node-4": "A" * 43 + "="}, signer=admin
        ),
    }


@pytest.mark.parametrize("name", sorted(SIGNED_PINNED))
def test_signed_entries_are_the_unsigned_bytes_and_sig_pinned(name: str) -> None:
    from consensus.signing import Keyring, Signer, split

    data = signed_entries()[name]
    assert data.hex() == SIGNED_PINNED[name]
    message, signature = split(data) or (b"", b"")
    assert len(signature) == 64
    assert E.decode(message) == E.decode(data)  # ``sig`` changes no field
    author = E.decode(data).node
    secret = bytes(range(32)) if author == "node-2" else bytes(range(1, 33))
    keys = Keyring({author: Signer(author, secret).public})
    assert keys.verify(author, data) is None
    assert keys.verify(author, message) == "it is not signed"
    tampered = bytearray(data)
    tampered[20] ^= 0x01  # a byte of the content, not of the signature
    assert keys.verify(author, bytes(tampered)) == f"its signature is not {author}'s"
    assert E.fast_decode(data) == E.parse(E.read_map(data))  # both paths accept ``sig``


def test_an_unsigned_members_entry_without_keys_is_the_old_bytes() -> None:
    assert L.members_entry(["node-3", "node-1"], "node-1", 1005.0).hex() == PINNED["members"]


#: An approval signed by its approver (issue 12): the signature is the approver's, not a node's.
SIGNED_APPROVAL = (
    "88a474797065a8617070726f76616ca667656e6f6d65a167a963616e646964617465a26332a86465636973"
    "696f6ea672656a656374a8617070726f766572a5616c696365a6726561736f6ea9746f6f207269736b79a2"
    "6174cb408f7c0000000000a3736967c44097b99ba1e9fde7071e54c4153610d61a5cb46bd55cad2da44a9d"
    "05c18a2b4369777ffa21dfff1da69f36e163fcbf6f940a129e09042ecf29d22abde99ca15b0f"
)


def test_a_signed_approval_is_pinned_and_verifies_with_the_approvers_key() -> None:
    from consensus.authors import author_of
    from consensus.signing import Keyring, Signer

    alice = Signer("alice", bytes(range(2, 34)))
    data = approval_entry("g", "c2", "reject", "alice", "too risky", 1007.5, signer=alice)
    assert data.hex() == SIGNED_APPROVAL
    entry = E.decode(data)
    assert author_of(entry) == "alice" and E.fast_decode(data) == E.parse(E.read_map(data))
    assert Keyring({"alice": alice.public}).verify("alice", data) is None
    with pytest.raises(ValueError, match="approve or reject"):
        approval_entry("g", "c2", "maybe", "alice", "", 1.0)


#: The admin's approvers entry, signed (issue 12's gap): keys are alice's and bob's of
#: tests/test_approval.py, quorum 1.
SIGNED_APPROVERS = (
    "86a474797065a9617070726f76657273a46b65797382a5616c696365d92c51383341493949745835345166"
    "526f476b3056394e64485244726653484849526b765676586551475a644d3da3626f62d92c534237656479"
    "32685634584a355a6f4959674734772f6e4442784b65503862583830716b332b3159464f553da671756f72"
    "756d01a46e6f6465a561646d696ea26174cb408f900000000000a3736967c440f26841270c76defb9bddd0"
    "07c1cef9dc55c6ee876095150aaa462f475f8846ef787156d54e9ff62004591cb677bc23782a47924519c5"
    "a0ccc75534e83b6c3500"
)


def test_a_signed_approvers_entry_is_pinned_and_only_the_admins_counts() -> None:
    from consensus.authors import signature_problem
    from consensus.signing import Keyring, Signer
    from runtime.keys import encode_sign_key

    admin, node = Signer("admin", bytes(range(1, 33))), Signer("node-1", bytes(range(32)))
    alice, bob = Signer("alice", bytes(range(2, 34))), Signer("bob", bytes(range(3, 35)))
    keys = {s.name: encode_sign_key(s.public) for s in (alice, bob)}
    data = approvers_entry(keys, 1, 1010.0, signer=admin)
    assert data.hex() == SIGNED_APPROVERS
    entry = E.decode(data)
    assert isinstance(entry, ApproverList) and E.fast_decode(data) == E.parse(E.read_map(data))
    ring = Keyring({s.name: s.public for s in (admin, node)})
    approvers = Keyring({s.name: s.public for s in (alice, bob)})
    assert signature_problem(entry, data, ring, ["node-1"], approvers) is None
    # a member's key, or an approver's, never writes who approves
    for forger in (node, alice):
        forged = E.encode(entry._replace(node=forger.name), forger)
        problem = signature_problem(E.decode(forged), forged, ring, ["node-1"], approvers)
        assert problem == f"a approvers entry is the admin's, not {forger.name}'s"
    # the admin's name with another key: the signature is not the admin's
    stolen = approvers_entry(keys, 1, 1010.0, signer=Signer("admin", bytes(range(5, 37))))
    assert "signature" in str(signature_problem(E.decode(stolen), stolen, ring, ["node-1"]))
    # a node named as an approver is refused, even by the admin
    with_node = approvers_entry(
        {**keys, "node-1": encode_sign_key(node.public)}, 1, 1.0, signer=admin
    )
    problem = signature_problem(E.decode(with_node), with_node, ring, ["node-1"])
    assert problem == "a node can never be an approver (node-1)"


@pytest.mark.parametrize(
    ("keys", "quorum", "problem"),
    [({}, 1, "names no approver"), ({"alice": "A" * 43 + "="}, 2, "quorum 2 is not between"),
     ({"alice": "A" * 43 + "="}, 0, "quorum 0 is not between")],
)  # fmt: skip
def test_an_approvers_entry_that_cannot_hold_is_refused_by_decode(
    keys: dict[str, str], quorum: int, problem: str
) -> None:
    data = E.encode(ApproverList(keys, quorum, "admin", 1.0))
    with pytest.raises(ConsensusError, match=f"approvers entry: .*{problem}"):
        E.decode(data)
