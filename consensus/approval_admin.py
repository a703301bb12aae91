"""The admin channel's approval ops: ``held`` (what waits for a person) and ``decide``.

``{"op": "held", "genome": G or None}`` lists the held candidates of one genome (or of
all) with their diff, evidence, the rules that held them and the approvals so far;
``{"op": "decide", "entry": BYTES}`` proposes a person's signed approval entry
(:mod:`consensus.approvals`), made and signed on the person's side: the secret key never
travels.  ``entry`` may also be the entry's fields with ``sig`` (64 bytes), for a client
that signs the encoded bytes itself.  What this node can already see is refused here, with
a hint (a non-approver or a bad signature, an unknown or decided candidate, a repeated
approver); the state machine checks the same again on every node when the entry commits,
so a race between two people, or a node that skipped this check, changes nothing.

``{"op": "approvers", "keys": {NAME: KEY}, "quorum": Q}`` (or ``"entry": BYTES``, an
``approvers`` entry the admin signed) proposes who approves from now on, signed with the
admin key this node holds when no entry is brought; every node judges with it once it
commits, whatever its cluster.yml says (docs/approval.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from consensus.approvals import Approval, ApproverList, approvers_entry, held_list, refusal
from consensus.authors import signature_problem
from consensus.entries import decode, encode
from consensus.ledger import LedgerState
from consensus.signing import Keyring, split, with_signature
from events.lineage_state import approvals_of
from events.store import GenomeStore
from evolution.errors import PolicyError, TarsError

__all__ = ["approvers_op", "decide_op", "held_op"]

_HINT = "list what waits with `tars approve --config cluster.yml --list` (docs/approval.md)"


class Proposer(Protocol):
    """What ``decide`` needs of the node's applier: commit an entry, wait until applied here."""

    def propose(self, data: bytes, timeout: float = 10.0) -> int: ...


def held_op(store: GenomeStore, state: LedgerState, body: Mapping[str, Any]) -> dict[str, Any]:
    """Every held candidate (of ``genome`` when given), waiting or rejected."""
    genome = body.get("genome")
    try:
        names = [str(genome)] if genome else store.genomes()
        held = [item for name in names for item in held_list(store.load(name))]
    except TarsError as exc:
        return {"ok": False, "error": exc.message, "hint": exc.hint or _HINT}
    return {
        "ok": True,
        "held": held,
        "quorum": state.approval.quorum,
        "approvers": sorted(state.approval.keys),
    }


def decide_op(
    store: GenomeStore, state: LedgerState, ledger: Proposer, body: Mapping[str, Any]
) -> dict[str, Any]:
    """Propose a signed approval; ``index`` is where it committed, ``adopted`` what it did."""
    try:
        data, entry = _entry(body.get("entry"))
        problem = signature_problem(entry, data, Keyring({}), [], state.approvers)
        if problem is not None:
            raise PolicyError(
                f"approval refused: {problem}",
                hint="sign with a key cluster.yml lists under approval (`tars keys --id NAME`)",
            )
        problem = refusal(store.load(entry.genome), entry)
        if problem is not None:
            raise PolicyError(f"approval refused: {problem}", hint=_HINT)
        index = ledger.propose(data)
        lineage = store.load(entry.genome)
    except TarsError as exc:
        return {"ok": False, "error": exc.message, "hint": exc.hint or _HINT}
    tally = approvals_of(lineage).get(entry.candidate, {})
    if tally.get(entry.approver) != entry.decision:
        return {
            "ok": False,
            "index": index,
            "error": f"the approval committed at {index} but was refused when applied "
            "(another decision came first)",
            "hint": "see the node's log; " + _HINT,
        }
    adopted = entry.decision == "approve" and entry.candidate not in lineage.pending
    return {
        "ok": True,
        "index": index,
        "adopted": adopted,
        "rejected": entry.decision == "reject",
        "approvals": sorted(w for w, d in tally.items() if d == "approve"),
        "quorum": state.approval.quorum,
        "head": lineage.head,
    }


def _entry(given: Any) -> tuple[bytes, Approval]:
    """The signed bytes and the typed approval from what the request carried."""
    if isinstance(given, dict):
        fields = {k: v for k, v in given.items() if k != "sig"}
        sig = given.get("sig")
        try:
            data = with_signature(
                encode(Approval(**fields)), sig if isinstance(sig, bytes) else b""
            )
        except (TypeError, ValueError) as exc:
            raise PolicyError(
                f"the approval's fields do not make an entry: {exc}",
                hint="send genome, candidate, decision, approver, reason, at and sig (64 bytes)",
            ) from exc
        given = data
    if not isinstance(given, bytes) or split(given) is None:
        raise PolicyError(
            "an approval must be signed entry bytes (or its fields and sig)",
            hint="make it with cli.approvals.decide, which signs with the approver's key",
        )
    try:
        typed = decode(given)
    except TarsError as exc:
        raise PolicyError(f"the approval does not decode: {exc}", hint=_HINT) from exc
    if not isinstance(typed, Approval):
        raise PolicyError("only an approval entry may be decided", hint=_HINT)
    return given, typed


def approvers_op(
    state: LedgerState,
    ledger: Proposer,
    body: Mapping[str, Any],
    admin_signed: Callable[[bytes], bytes],
    now: float,
) -> dict[str, Any]:
    """Propose an ``approvers`` entry; answer with the approvers this node judges with after."""
    hint = "`tars approve --config cluster.yml --set-approvers alice,bob --quorum 2`"
    try:
        data = body.get("entry")
        if data is None:
            keys, quorum = body.get("keys"), body.get("quorum")
            if not isinstance(keys, dict) or type(quorum) is not int:
                raise PolicyError("approvers needs keys (name -> base64 key) and quorum", hint=hint)
            data = admin_signed(approvers_entry({str(k): v for k, v in keys.items()}, quorum, now))
        if not isinstance(data, bytes):
            raise PolicyError("an approvers entry must be signed entry bytes", hint=hint)
        entry = decode(data)
        if not isinstance(entry, ApproverList):
            raise PolicyError("only an approvers entry may be proposed here", hint=hint)
        keyring = state.keys if state.keys is not None else Keyring({})
        problem = signature_problem(entry, data, keyring, state.members, state.approvers)
        if problem is not None and state.keys is not None:
            raise PolicyError(f"approvers refused: {problem}", hint=hint)
        index = ledger.propose(data)
    except TarsError as exc:
        return {"ok": False, "error": exc.message, "hint": exc.hint or hint}
    return {
        "ok": True,
        "index": index,
        "approvers": sorted(state.approval.keys),
        "quorum": state.approval.quorum,
    }
