"""Spread: the swarm's incubators as one pool (``evolution.spread`` in cluster.yml).

Every node lets its peers ask its incubators to prove a candidate, but only a candidate
the swarm has committed: the evolving node first commits its cycle's candidates as an
``offer`` ledger entry, then asks its peers by reference (:class:`IncubateOffered`, the
only request a peer's incubator takes over remote actor messages).  The serving node
builds the run itself from its own ledger state: the offer's patch, its own store's tree
of the offer's parent and its own manifest of the genome, so a member key cannot make
another node run a manifest's commands or a tree of its choosing.  What goes back is the
verdict and bounded evidence (:func:`bounded`), nothing else of the sandbox's output.

Anything else is refused (:class:`~runtime.remote.Refused`) and counted: the old
:class:`~actors.messages.Incubate`, an offer this node never committed (after waiting a
little for its ledger to catch up), another member's offer, a candidate not in the offer,
a candidate already proven once, a genome or parent version this node does not hold.
On the asking side the supervisor then proves the candidate on a local incubator (the
same fallback as for a peer that cannot be reached).
"""

from __future__ import annotations

import itertools
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import pykka

from actors.messages import REMOTE_TYPES, Incubate, IncubateOffered
from actors.supervisor import Supervisor
from consensus.entries import Offer
from events.store import GenomeStore
from evolution.errors import TarsError, UnknownGenomeError, UnknownVersionError
from evolution.generate import Candidate
from evolution.manifest import parse_manifest
from runtime import remote
from runtime.incubation import IncubationReport
from runtime.remote import Refused

#: How long a node waits for an offer it is asked about to reach its own ledger state.
OFFER_WAIT = 10.0
#: What one answer may carry: bytes of ``detail`` and of ``failure``, samples per side,
#: entries of ``extra`` and characters of an ``extra`` key.
TEXT_CAP = 2048
SAMPLES_CAP = 256
EXTRA_CAP = 32
KEY_CAP = 64
#: (offer, candidate) pairs a node remembers having proven (each is proven once).
SERVED_MEMORY = 1024
_CUT = " …[cut]"
_MEASURES = ("benchmark", "instructions")

#: Looks up a committed offer by id, waiting up to the given seconds (``Offers.get``).
OfferLookup = Callable[[str, float], Offer | None]


class Spread:
    """Serves this node's incubators to peers; adds the peers' to this node's pool."""

    def __init__(
        self,
        transport: remote.MessageTransport,
        supervisor: Supervisor,
        *,
        store: GenomeStore,
        offers: OfferLookup,
        offer_wait: float = OFFER_WAIT,
    ) -> None:
        self.transport = transport
        self.supervisor = supervisor
        self.store = store
        self.offers = offers
        self.offer_wait = offer_wait
        self.codec = remote.Codec(REMOTE_TYPES)
        #: the peers' incubators in this node's pool (empty unless spread is on)
        self.remote: list[remote.RemoteActorRef] = []
        #: candidates this node proved for peers, and requests it refused
        self.served = 0
        self.refused = 0
        self._lock = threading.Lock()
        self._proven: OrderedDict[tuple[str, str], None] = OrderedDict()
        remote.serve(
            transport,
            self.codec,
            asks={},
            asks_from={"incubator": self._incubate_for_peer},
            accepts={"incubator": (IncubateOffered,)},
            refused=self._count_refusal,
        )

    def pool_with(self, peers: Iterable[str]) -> None:
        """Add these peers' incubators to this node's incubator pool (asked by reference)."""
        for peer in peers:
            ref = remote.RemoteActorRef(self.transport, peer, "incubator", self.codec)
            self.remote.append(ref)
            self.supervisor.add("incubator", OfferedIncubator(ref))

    @property
    def pooled(self) -> bool:
        """Whether a peer's incubator is in this node's pool now (a cycle then commits an
        offer before it asks)."""
        return any(isinstance(r, OfferedIncubator) for r in self.supervisor.refs("incubator"))

    @property
    def asked(self) -> int:
        """Candidates this node asked its peers to prove."""
        return sum(ref.asks for ref in self.remote)

    def _count_refusal(self, sender: str, error: Refused) -> None:
        with self._lock:
            self.refused += 1

    def _incubate_for_peer(self, sender: str, message: IncubateOffered) -> IncubationReport:
        """A peer's committed candidate, proven on this node's own incubators (a transport
        worker waits); :class:`Refused` for anything this node's ledger does not hold."""
        incubate = self._incubate_of(sender, message)
        report = self.supervisor.ask("incubator", incubate, local=True)
        with self._lock:
            self.served += 1
        return bounded(report, incubate.candidate.id)

    def _incubate_of(self, sender: str, message: IncubateOffered) -> Incubate:
        """The run this node makes of a peer's reference, from its own ledger and store."""
        genome, offer_id, candidate, rounds = message
        if not (
            isinstance(genome, str)
            and isinstance(offer_id, str)
            and isinstance(candidate, str)
            and type(rounds) is int
        ):
            raise Refused(f"a malformed request to prove a candidate from {sender}")
        offer = self.offers(offer_id, self.offer_wait)
        if offer is None or offer.genome != genome:
            raise Refused(f"offer {offer_id} of {genome} is not committed here")
        if offer.node != sender:
            raise Refused(f"offer {offer_id} is {offer.node}'s, not {sender}'s")
        patch = next((c.patch for c in offer.candidates if c.candidate == candidate), None)
        if patch is None:
            raise Refused(f"candidate {candidate} is not in offer {offer_id}")
        try:
            head = self.store.head(genome)
            manifest = parse_manifest(head.manifest_text, f"{genome}/genome.toml")
            tree = self.store.materialise(genome, offer.parent)
        except UnknownGenomeError as exc:
            raise Refused(f"genome {genome} is not known here") from exc
        except UnknownVersionError as exc:
            raise Refused(f"version {offer.parent[:12]} of {genome} is not applied here") from exc
        except TarsError as exc:
            raise Refused(f"cannot prove {candidate} of offer {offer_id} here: {exc}") from exc
        with self._lock:
            if (offer_id, candidate) in self._proven:
                raise Refused(f"candidate {candidate} of offer {offer_id} was proven here already")
            self._proven[(offer_id, candidate)] = None
            while len(self._proven) > SERVED_MEMORY:
                self._proven.popitem(last=False)
        described = f"candidate {candidate} of offer {offer_id} by {offer.node}"
        proven = Candidate(
            candidate, offer.parent, patch, "offered", "offered", "", "", 0, described
        )
        rounds = max(2, min(rounds, manifest.fitness.rounds))  # never more than its own manifest
        return Incubate(manifest, tree, proven, rounds, offer_id)


class OfferedIncubator:
    """A peer's incubator in this node's pool, asked by reference to a committed offer.

    Has the surface of ``pykka.ActorRef`` the supervisor uses.  An :class:`Incubate`
    goes out as :class:`IncubateOffered` (its offer, genome, candidate id and rounds: no
    manifest, no tree, no patch); one without a committed offer is refused here, without
    asking; the peer's answer is checked and bounded before anyone reads it.
    """

    def __init__(self, ref: remote.RemoteActorRef) -> None:
        self.ref = ref

    def __repr__(self) -> str:
        return f"OfferedIncubator({self.ref.actor}@{self.ref.peer})"

    def is_alive(self) -> bool:
        return self.ref.is_alive()

    def stop(self, block: bool = True) -> None:
        self.ref.stop(block)

    def tell(self, message: Any) -> None:
        raise Refused("a peer's incubator is only asked, by reference to a committed offer")

    def ask(self, message: Any, *, block: bool = True, timeout: float | None = None) -> Any:
        """The peer's bounded report (``block=True``) or a pykka future of it."""
        try:
            wire, candidate = _reference(message)
        except Refused as exc:
            if block:
                raise
            failed: pykka.Future[Any] = pykka.ThreadingFuture()
            failed.set_exception((type(exc), exc, exc.__traceback__))
            return failed
        if block:
            return _answer(self.ref.ask(wire, timeout=timeout), candidate)
        future = self.ref.ask(wire, block=False, timeout=timeout)
        return future.map(lambda report: _answer(report, candidate))


def _reference(message: Any) -> tuple[IncubateOffered, str]:
    if not isinstance(message, Incubate) or message.offer is None:
        raise Refused("only a committed offer's candidate is proven on a peer")
    candidate = message.candidate.id
    return IncubateOffered(
        message.manifest.name, message.offer, candidate, message.rounds
    ), candidate


def _answer(report: Any, candidate: str) -> IncubationReport:
    """A peer's answer as a bounded report of the candidate asked about, or Refused."""
    if not isinstance(report, IncubationReport) or report.candidate != candidate:
        raise Refused(f"a peer answered something other than a report on {candidate}")
    return bounded(report, candidate)


# ---- bounded evidence -------------------------------------------------------------------


def bounded(report: IncubationReport, candidate: str) -> IncubationReport:
    """The verdict and bounded evidence of a report, and nothing else; Refused if malformed.

    ``detail`` and ``failure`` are cut to :data:`TEXT_CAP` bytes, the samples to
    :data:`SAMPLES_CAP` per side, ``extra`` and each side's figures (peak memory, work
    counts, limited figures) to :data:`EXTRA_CAP` numeric entries; every
    field is checked for its type, since a peer's answer is built from a peer's bytes.
    """
    try:
        if type(report.tests_passed) is not bool or report.measure not in _MEASURES:
            raise TypeError("tests_passed or measure is not what a report holds")
        return IncubationReport(
            candidate,
            report.tests_passed,
            None if report.failure is None else _text(report.failure),
            _text(report.detail),
            _samples(report.parent_samples),
            _samples(report.candidate_samples),
            child_seconds=_number(report.child_seconds),
            total_seconds=_number(report.total_seconds),
            runs=int(_number(report.runs)),
            extra=_extra(report.extra),
            measure=report.measure,
            parent_figures=_extra(report.parent_figures),
            candidate_figures=_extra(report.candidate_figures),
        )
    except (TypeError, ValueError, OverflowError) as exc:
        raise Refused(f"a report on {candidate} is malformed: {exc}") from exc


def _text(value: Any) -> str:
    if type(value) is not str:
        raise TypeError(f"text field is {type(value).__name__}")
    data = value.encode("utf-8", "replace")
    if len(data) <= TEXT_CAP:
        return value
    room = TEXT_CAP - len(_CUT.encode())
    return data[:room].decode("utf-8", "ignore") + _CUT


def _number(value: Any) -> float:
    if type(value) not in (int, float) or not math.isfinite(value):
        raise TypeError(f"{value!r} is not a finite number")
    return float(value)


def _samples(values: Any) -> tuple[float, ...]:
    if not isinstance(values, tuple | list):
        raise TypeError("samples are not a sequence")
    return tuple(_number(v) for v in values[:SAMPLES_CAP])


def _extra(values: Any) -> dict[str, float]:
    if not isinstance(values, dict):
        raise TypeError("extra is not a map")
    out: dict[str, float] = {}
    for key, value in itertools.islice(values.items(), EXTRA_CAP):
        if type(key) is not str:
            raise TypeError("an extra key is not a string")
        out[key[:KEY_CAP]] = _number(value)
    return out
