"""A node's Prometheus metrics: one registry per node, every series named ``tars_…``.

docs/monitoring.md lists the series.  Three kinds of source feed them:

- the HTTP front calls :meth:`Metrics.on_request` once per served request (the
  contract's callable), which counts it and times it in a histogram;
- the node's applier hands each applied run to :meth:`Metrics.after_apply`, which counts
  adoptions, rollbacks and the proposals the swarm judged; the Deployer sets the rollout's
  step and weight with :meth:`Metrics.set_rollout`;
- the Raft and transport figures are read when a scrape comes, from callables handed in
  at construction (a custom collector), so ``/metrics`` never shows a stale term.

Each node has its own :class:`~prometheus_client.CollectorRegistry`, never the library's
global one: several nodes run in one test process and must not share counters.

Cardinality is bounded on purpose, since label values come from what callers send: a
node serves at most two versions of a genome at once (blue and green), and only the
:data:`KEEP_VERSIONS` most recently served versions of a genome keep their series (an
older version's series are removed when a newer one is served); genomes and functions
past :data:`MAX_GENOMES` and :data:`MAX_FUNCTIONS` are counted under ``_other``.

Rollback triggers read the same figures through :meth:`Metrics.figures`, built from the
histogram and counter the scrape shows, and take the difference of two readings
(:func:`since`) for one analysis window; :func:`colour_window` gives it as the
Deployer's :class:`~runtime.service.control.ColourWindow`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from evolution.latency import BOUNDS, EMPTY, Tally
from runtime.service.control import Colour, ColourWindow

log = logging.getLogger("tars.metrics")

# ``*_created`` series double every counter's series and say nothing a restart does not
# (Prometheus sees resets anyway); TARS is the only user of the library in its processes.
disable_created_metrics()

#: Versions of one genome whose request series are kept (two serve at once; the two
#: before them stay visible for a while after a promotion or an abort).
KEEP_VERSIONS = 4
#: Genomes and functions per genome with series of their own; the rest count as ``_other``.
MAX_GENOMES = 32
MAX_FUNCTIONS = 64
#: Longest label value kept (a longer one is cut): names and version ids are far shorter.
MAX_LABEL = 80
OTHER = "_other"
COLOURS = ("blue", "green")

REQUEST_LABELS = ("genome", "function", "version", "colour", "outcome")
#: genome -> colour -> version -> what the histogram holds (see :class:`Tally`)
Figures = dict[str, dict[str, dict[str, Tally]]]


class AppliedLike(Protocol):
    """What :meth:`Metrics.after_apply` reads of ``consensus.ledger.Applied``."""

    @property
    def kind(self) -> str: ...
    @property
    def genome(self) -> str | None: ...
    @property
    def written(self) -> bool: ...
    @property
    def decided(self) -> dict[str, str]: ...


class Metrics:
    """One node's registry and the ways in: requests, applied decisions, rollout steps."""

    def __init__(
        self,
        node: str,
        *,
        raft: Callable[[], Mapping[str, Any]] | None = None,
        transport: Callable[[], Mapping[str, int]] | None = None,
    ) -> None:
        """``raft`` answers ``term``, ``commit_index`` and ``applied_index`` (a node's
        status); ``transport`` its counters (``Transport.stats``): both are called at
        each scrape, so what a scrape shows is fresh."""
        self.node = node
        self.registry = CollectorRegistry()
        reg = self.registry
        self.requests = Counter(
            "tars_requests", "Requests served by the node's front", REQUEST_LABELS, registry=reg
        )
        self.seconds = Histogram(
            "tars_request_seconds",
            "Time to answer a request at the front, seconds",
            REQUEST_LABELS[:-1],
            buckets=BOUNDS,
            registry=reg,
        )
        self.rollout_step = Gauge(
            "tars_rollout_step",
            "Current step of the genome's rollout (0: none)",
            ["genome"],
            registry=reg,
        )
        self.rollout_weight = Gauge(
            "tars_rollout_weight",
            "Share of requests routed to green (0..1)",
            ["genome"],
            registry=reg,
        )
        self.adoptions = Counter(
            "tars_adoptions",
            "Adoptions this node applied from the ledger",
            ["genome"],
            registry=reg,
        )
        self.rollbacks = Counter(
            "tars_rollbacks",
            "Rollbacks this node applied from the ledger",
            ["genome"],
            registry=reg,
        )
        self.judged = Counter(
            "tars_candidates_judged",
            "Proposals the swarm decided (adopted or rejected), as this node applied them",
            ["genome"],
            registry=reg,
        )
        reg.register(_NodeCollector(raft, transport))
        self._lock = threading.Lock()
        #: label tuple -> (counter child, histogram child): the front's hot path skips labels()
        self._children: dict[tuple[str, ...], tuple[Any, Any]] = {}
        #: genome -> version -> label tuples made for it, least recently served first
        self._versions: dict[str, OrderedDict[str, set[tuple[str, ...]]]] = {}
        self._functions: dict[str, set[str]] = {}

    # -- the front's callable ------------------------------------------------------------

    def on_request(
        self, genome: str, function: str, version: str, colour: str, seconds: float, error: bool
    ) -> None:
        """Count and time one served request (the contract's ``on_request``)."""
        key = (genome, function, version, colour, "error" if error else "ok")
        children = self._children.get(key)
        if children is None or not self._recent(genome, version):
            children = self._child(key)
        children[0].inc()
        children[1].observe(max(0.0, seconds))

    def _recent(self, genome: str, version: str) -> bool:
        """Mark ``version`` served now; False when it is not among the kept ones."""
        with self._lock:
            versions = self._versions.get(genome)
            if versions is None or version not in versions:
                return False
            if next(reversed(versions)) != version:
                versions.move_to_end(version)
            return True

    def _child(self, key: tuple[str, ...]) -> tuple[Any, Any]:
        """The series of a label tuple not seen yet (bounded, see the module's doc)."""
        genome, function, version, colour, outcome = key
        with self._lock:
            labels = self._labels(genome, function, version, colour)
            full = (*labels, outcome)
            versions = self._versions.setdefault(labels[0], OrderedDict())
            versions.setdefault(labels[2], set()).add(full)
            versions.move_to_end(labels[2])
            while len(versions) > KEEP_VERSIONS:
                self._forget(labels[0], *versions.popitem(last=False))
            children = (self.requests.labels(*full), self.seconds.labels(*labels))
            if full == key:
                self._children[key] = children
            return children

    def _labels(self, genome: str, function: str, version: str, colour: str) -> tuple[str, ...]:
        genome = genome[:MAX_LABEL]
        if genome not in self._functions and len(self._functions) >= MAX_GENOMES:
            genome = OTHER
        functions = self._functions.setdefault(genome, set())
        function = function[:MAX_LABEL]
        if function not in functions:
            if len(functions) >= MAX_FUNCTIONS:
                function = OTHER
            functions.add(function)
        return (genome, function, version[:MAX_LABEL], colour if colour in COLOURS else OTHER)

    def _forget(self, genome: str, version: str, made: set[tuple[str, ...]]) -> None:
        """Remove an old version's series: it is no longer served (see KEEP_VERSIONS)."""
        for full in made:
            self._children.pop(full, None)
            for metric, labels in ((self.requests, full), (self.seconds, full[:-1])):
                with contextlib.suppress(KeyError):  # a histogram series serves both outcomes
                    metric.remove(*labels)
        log.debug("%s: dropped the request series of %s %s", self.node, genome, version)

    # -- decisions and rollouts ----------------------------------------------------------

    def after_apply(self, results: Iterable[AppliedLike]) -> None:
        """Count what an applied run decided (the applier's ``on_applied``).

        Only entries written now count (``written``): a re-delivery after a restart
        decides nothing new.  A judged candidate is a proposal the swarm decided.
        """
        for applied in results:
            if not applied.written or applied.genome is None:
                continue
            if applied.kind == "rollback":
                self.rollbacks.labels(applied.genome).inc()
            for verdict in applied.decided.values():
                self.judged.labels(applied.genome).inc()
                if verdict == "adopt":
                    self.adoptions.labels(applied.genome).inc()

    def set_rollout(self, genome: str, step: int, weight: float) -> None:
        """The Deployer's current step (0: no rollout) and green's share of requests."""
        self.rollout_step.labels(genome).set(step)
        self.rollout_weight.labels(genome).set(weight)

    # -- reading -------------------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        """The ``/metrics`` body in Prometheus text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def figures(self) -> Figures:
        """Requests, errors and latency buckets per genome, colour and version, summed
        over functions: the numbers a scrape shows, as plain values."""
        counts: dict[tuple[str, str, str], list[int]] = {}
        for metric in self.requests.collect():
            for sample in metric.samples:
                if sample.name != "tars_requests_total":
                    continue
                got = counts.setdefault(_where(sample.labels), [0, 0])
                got[0] += int(sample.value)
                if sample.labels["outcome"] == "error":
                    got[1] += int(sample.value)
        spans: dict[tuple[str, str, str], tuple[float, list[int]]] = {}
        for metric in self.seconds.collect():
            for sample in metric.samples:
                where = _where(sample.labels)
                total, buckets = spans.setdefault(where, (0.0, [0] * (len(BOUNDS) + 1)))
                if sample.name.endswith("_sum"):
                    spans[where] = (total + sample.value, buckets)
                elif sample.name.endswith("_bucket"):
                    le = sample.labels["le"]
                    index = len(BOUNDS) if le == "+Inf" else BOUNDS.index(float(le))
                    buckets[index] += int(sample.value)
        out: Figures = {}
        for where, (requests, errors) in counts.items():
            total, buckets = spans.get(where, (0.0, [0] * (len(BOUNDS) + 1)))
            genome, colour, version = where
            tally = Tally(requests, errors, total, tuple(buckets))
            out.setdefault(genome, {}).setdefault(colour, {})[version] = tally
        return out


def since(now: Figures, before: Figures) -> Figures:
    """One window: each series of ``now`` less its reading in ``before`` (if any)."""
    out: Figures = {}
    for genome, colours in now.items():
        for colour, versions in colours.items():
            for version, tally in versions.items():
                old = before.get(genome, {}).get(colour, {}).get(version, EMPTY)
                seen = tally.minus(old) if old.buckets else tally
                out.setdefault(genome, {}).setdefault(colour, {})[version] = seen
    return out


def colour_window(
    window: Figures, genome: str, colour: Colour, version: str | None = None
) -> ColourWindow:
    """One colour's figures in a window (``since``) in the Deployer's terms: ``version``'s
    alone, or all the colour's versions added when ``version`` is None."""
    versions = window.get(genome, {}).get(colour, {})
    chosen = [versions.get(version, EMPTY)] if version is not None else list(versions.values())
    total = EMPTY
    for tally in chosen:
        total = total.plus(tally)
    return ColourWindow(
        version, total.requests, total.errors, total.quantile(0.5), total.quantile(0.99)
    )


def _where(labels: Mapping[str, str]) -> tuple[str, str, str]:
    return labels["genome"], labels["colour"], labels["version"]


class _NodeCollector:
    """Raft and transport figures read from the node when a scrape comes."""

    def __init__(
        self,
        raft: Callable[[], Mapping[str, Any]] | None,
        transport: Callable[[], Mapping[str, int]] | None,
    ) -> None:
        self.raft = raft
        self.transport = transport

    def describe(self) -> Iterator[Metric]:
        """The names this collector owns, so a duplicate registration fails loudly."""
        yield from self._families({}, {})

    def collect(self) -> Iterator[Metric]:
        yield from self._families(_read(self.raft), _read(self.transport))

    def _families(self, raft: Mapping[str, Any], stats: Mapping[str, int]) -> Iterator[Metric]:
        for name, key, doc in (
            ("tars_raft_term", "term", "The node's Raft term"),
            ("tars_raft_commit_index", "commit_index", "Highest ledger index known committed"),
            (
                "tars_raft_applied_index",
                "applied_index",
                "Highest ledger index applied to the store",
            ),
        ):
            family = GaugeMetricFamily(name, doc)
            if isinstance(raft.get(key), int | float):
                family.add_metric([], float(raft[key]))
            yield family
        dropped = CounterMetricFamily(
            "tars_transport_dropped",
            "Frames the transport dropped since start, by why (docs/transport.md)",
            labels=["kind"],
        )
        for key, value in sorted(stats.items()):
            if key.startswith("dropped_"):
                dropped.add_metric([key.removeprefix("dropped_")], float(value))
        yield dropped


def _read(source: Callable[[], Mapping[str, Any]] | None) -> Mapping[str, Any]:
    """A source's figures; a scrape still answers when the node is stopping (nothing then)."""
    if source is None:
        return {}
    try:
        return source()
    except Exception as exc:  # a scrape must never fail because one part is stopped
        log.debug("a metrics source failed: %s", exc)
        return {}
