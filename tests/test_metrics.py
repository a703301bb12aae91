"""A node's /metrics: real Prometheus text, parsed back with prometheus_client's parser.

The series change as requests are fed, two nodes' registries never mix, the Raft and
transport figures are read at the scrape (from a real engine and real transports), the
label sets stay bounded, and the figures a rollback trigger reads are the scrape's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx
import pytest
from frontkit import StandInFront
from prometheus_client.parser import text_string_to_metric_families

from consensus.engine import RaftEngine
from consensus.ledger import Applied
from consensus.testing import LocalHub
from evolution.errors import NotCommittedError
from evolution.latency import BOUNDS, Tally, percentile, quantile
from runtime.keys import generate_keypair
from runtime.metrics import KEEP_VERSIONS, MAX_FUNCTIONS, Metrics, colour_window, since
from runtime.service.control import ColourWindow
from runtime.service.load import Request, drive
from runtime.testing import free_port, wait_until
from runtime.transport import Peer, Transport

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(metrics: Metrics) -> Samples:
    """Every sample of a render, keyed by (name, sorted labels)."""
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain; version=")
    return parse(body.decode())


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


REQ = {"genome": "logstats", "function": "summarise", "version": "v1", "colour": "blue"}


def test_request_series_count_and_time_what_the_front_reports() -> None:
    metrics = Metrics("n1")
    assert value(scrape(metrics), "tars_requests_total", **REQ, outcome="ok") is None
    metrics.on_request("logstats", "summarise", "v1", "blue", 0.003, False)
    metrics.on_request("logstats", "summarise", "v1", "blue", 0.004, False)
    metrics.on_request("logstats", "summarise", "v1", "blue", 0.3, True)
    metrics.on_request("logstats", "search", "v2", "green", 0.0001, False)
    got = scrape(metrics)
    assert value(got, "tars_requests_total", **REQ, outcome="ok") == 2
    assert value(got, "tars_requests_total", **REQ, outcome="error") == 1
    green = {"genome": "logstats", "function": "search", "version": "v2", "colour": "green"}
    assert value(got, "tars_requests_total", **green, outcome="ok") == 1
    assert value(got, "tars_request_seconds_count", **REQ) == 3
    assert value(got, "tars_request_seconds_sum", **REQ) == pytest.approx(0.307)
    assert value(got, "tars_request_seconds_bucket", **REQ, le="0.002") == 0
    assert value(got, "tars_request_seconds_bucket", **REQ, le="0.005") == 2
    assert value(got, "tars_request_seconds_bucket", **REQ, le="0.5") == 3
    assert value(got, "tars_request_seconds_bucket", **REQ, le="+Inf") == 3
    assert value(got, "tars_request_seconds_bucket", **green, le="0.00025") == 1
    assert not any(name.endswith("_created") for name, _ in got)  # no doubled series
    metrics.on_request("logstats", "summarise", "v1", "blue", 0.001, False)
    assert value(scrape(metrics), "tars_requests_total", **REQ, outcome="ok") == 3


def test_two_nodes_registries_are_independent() -> None:
    one, two = Metrics("n1"), Metrics("n2")
    one.on_request("logstats", "summarise", "v1", "blue", 0.01, False)
    two.set_rollout("logstats", 2, 0.1)
    assert value(scrape(one), "tars_requests_total", **REQ, outcome="ok") == 1
    assert value(scrape(two), "tars_requests_total", **REQ, outcome="ok") is None
    assert value(scrape(one), "tars_rollout_weight", genome="logstats") is None
    assert value(scrape(two), "tars_rollout_weight", genome="logstats") == 0.1
    assert value(scrape(two), "tars_rollout_step", genome="logstats") == 2


def test_decisions_are_counted_once_from_the_applied_results() -> None:
    metrics = Metrics("n1")
    metrics.after_apply(
        [
            Applied(5, "vote", "logstats", True, {}, {"p1": "adopt"}),
            Applied(6, "vote", "logstats", True, {}, {"p2": "reject"}),
            Applied(7, "rollback", "logstats", True, {}, {}),
            Applied(8, "cycle", "other", True, {"p3": ("v", frozenset())}, {}),
            Applied(4, "vote", "logstats", False, {}, {"p0": "adopt"}),  # a re-delivery
            Applied(9, "members", None, True, {}, {}),
        ]
    )
    got = scrape(metrics)
    assert value(got, "tars_adoptions_total", genome="logstats") == 1
    assert value(got, "tars_candidates_judged_total", genome="logstats") == 2
    assert value(got, "tars_rollbacks_total", genome="logstats") == 1
    assert value(got, "tars_adoptions_total", genome="other") is None


def test_raft_and_transport_figures_are_read_at_each_scrape() -> None:
    raft = {"term": 1, "commit_index": 3, "applied_index": 2}
    stats = {"sent": 10, "dropped_blocked": 0, "dropped_oversize": 1}
    metrics = Metrics("n1", raft=lambda: raft, transport=lambda: stats)
    got = scrape(metrics)
    assert (value(got, "tars_raft_term"), value(got, "tars_raft_commit_index")) == (1, 3)
    assert value(got, "tars_raft_applied_index") == 2
    assert value(got, "tars_transport_dropped_total", kind="oversize") == 1
    assert value(got, "tars_transport_dropped_total", kind="sent") is None  # drops only
    raft.update(term=4, commit_index=9)
    stats["dropped_blocked"] = 7
    got = scrape(metrics)
    assert (value(got, "tars_raft_term"), value(got, "tars_raft_commit_index")) == (4, 9)
    assert value(got, "tars_transport_dropped_total", kind="blocked") == 7


def test_a_failing_source_leaves_its_series_out_and_the_scrape_answers() -> None:
    def stopped() -> dict[str, int]:
        raise RuntimeError("engine stopped")

    metrics = Metrics("n1", raft=stopped, transport=stopped)
    metrics.on_request("logstats", "summarise", "v1", "blue", 0.01, False)
    got = scrape(metrics)
    assert value(got, "tars_raft_term") is None
    assert value(got, "tars_requests_total", **REQ, outcome="ok") == 1


def test_a_real_engine_s_term_and_indexes_move_in_the_scrape(tmp_path) -> None:
    engine = RaftEngine("a", LocalHub().transport("a"), ["a"], tmp_path / "a.journal")
    engine.on_commit(lambda committed: None)

    def raft() -> dict[str, int]:
        status = engine.status()
        return {
            "term": status["term"],
            "commit_index": status["commit_index"],
            "applied_index": status["last_applied"],
        }

    metrics = Metrics("a", raft=raft)
    assert value(scrape(metrics), "tars_raft_term") == 0  # not started
    engine.start()
    try:
        wait_until(lambda: engine.status()["role"] == "leader", "a one-node leader")
        before = value(scrape(metrics), "tars_raft_commit_index") or 0
        index = 0
        for n in range(3):
            with contextlib.suppress(NotCommittedError):
                index = engine.propose(b"entry-%d" % n, timeout=5.0)
        wait_until(lambda: engine.status()["commit_index"] >= index, "the commits")
        got = scrape(metrics)
        assert (value(got, "tars_raft_term") or 0) >= 1
        assert (value(got, "tars_raft_commit_index") or 0) >= index > before
    finally:
        engine.stop()


@pytest.fixture
def transports() -> Iterator[tuple[Transport, Transport]]:
    keys = {name: generate_keypair() for name in "ab"}
    peers = {n: Peer(n, f"tcp://127.0.0.1:{free_port()}", keys[n][0]) for n in "ab"}
    made = [
        Transport(n, peers[n].endpoint, *keys[n], [peers[o] for o in "ab" if o != n]) for n in "ab"
    ]
    try:
        for transport in made:
            transport.start()
        yield made[0], made[1]
    finally:
        for transport in made:
            transport.stop()


def test_a_real_transport_s_drops_show_by_kind(transports: tuple[Transport, Transport]) -> None:
    a, _ = transports
    metrics = Metrics("a", transport=a.stats)
    assert value(scrape(metrics), "tars_transport_dropped_total", kind="blocked") == 0
    a.block(["b"])
    for n in range(3):
        a.send("b", "anything", n)
    wait_until(lambda: a.stats()["dropped_blocked"] >= 3, "the blocked frames counted")
    assert value(scrape(metrics), "tars_transport_dropped_total", kind="blocked") == 3


def test_series_of_old_versions_are_dropped_and_labels_are_bounded() -> None:
    metrics = Metrics("n1")
    for n in range(KEEP_VERSIONS + 2):
        metrics.on_request("logstats", "summarise", f"v{n}", "blue", 0.01, n % 2 == 0)
    metrics.on_request("logstats", "summarise", "v2", "blue", 0.01, False)  # v2 served again
    metrics.on_request("logstats", "summarise", "v6", "blue", 0.01, False)
    versions = {dict(labels).get("version") for name, labels in scrape(metrics) if labels}
    assert versions - {None} == {"v2", "v4", "v5", "v6"}  # the least recently served go
    for n in range(MAX_FUNCTIONS + 5):
        metrics.on_request("g", f"f{n}", "v", "purple", 0.01, False)
    labelled = [dict(labels) for _, labels in scrape(metrics)]
    functions = {lab["function"] for lab in labelled if lab.get("genome") == "g"}
    assert len(functions) == MAX_FUNCTIONS + 1 and "_other" in functions
    colours = {lab["colour"] for lab in labelled if lab.get("genome") == "g"}
    assert colours == {"_other"}
    got = scrape(metrics)
    other = {"genome": "g", "function": "_other", "version": "v", "colour": "_other"}
    assert value(got, "tars_requests_total", **other, outcome="ok") == 5


def test_figures_are_the_scrape_s_numbers_and_windows_are_differences() -> None:
    metrics = Metrics("n1")
    for seconds in (0.001, 0.001, 0.004, 0.3):
        metrics.on_request("logstats", "summarise", "v1", "blue", seconds, seconds > 0.1)
    metrics.on_request("logstats", "search", "v1", "blue", 0.001, False)
    metrics.on_request("logstats", "search", "v2", "green", 0.02, False)
    before = metrics.figures()
    blue = before["logstats"]["blue"]["v1"]
    got = scrape(metrics)
    count = sum(
        v for (name, labels), v in got.items()
        if name == "tars_requests_total" and dict(labels)["colour"] == "blue"
    )  # fmt: skip
    assert blue.requests == count == 5 and blue.errors == 1
    assert blue.buckets[-1] == 5 and blue.buckets[BOUNDS.index(0.001)] == 3
    assert blue.seconds == pytest.approx(0.307)
    assert before["logstats"]["green"]["v2"].requests == 1
    for _ in range(4):
        metrics.on_request("logstats", "summarise", "v2", "green", 0.02, True)
    window = since(metrics.figures(), before)
    assert window["logstats"]["blue"]["v1"].requests == 0
    green = window["logstats"]["green"]["v2"]
    assert (green.requests, green.errors) == (4, 4)
    assert BOUNDS[BOUNDS.index(0.02) - 1] < green.quantile(0.99) <= 0.02
    as_deployer = colour_window(window, "logstats", "green", "v2")
    assert as_deployer == ColourWindow("v2", 4, 4, green.quantile(0.5), green.quantile(0.99))
    everything = colour_window(metrics.figures(), "logstats", "blue")
    assert (everything.version, everything.requests, everything.errors) == (None, 5, 1)
    assert 0.001 < everything.p99 <= 0.5 and everything.p50 <= 0.001
    assert colour_window(window, "nogenome", "blue") == ColourWindow(None, 0, 0, 0.0, 0.0)


def test_quantiles_follow_prometheus_histogram_quantile() -> None:
    bounds = (0.1, 0.2, 0.4)
    assert quantile(0.5, bounds, (0, 10, 10, 10)) == pytest.approx(0.15)
    assert quantile(0.99, bounds, (0, 0, 0, 10)) == 0.4  # in +Inf: the highest bound
    assert quantile(0.25, bounds, (5, 10, 20, 20)) == pytest.approx(0.1)
    assert quantile(0.5, bounds, (0, 0, 0, 0)) == 0.0
    with pytest.raises(ValueError):
        quantile(1.5, bounds, (1, 1, 1, 1))
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5 and percentile([], 0.9) == 0.0
    later = Tally(10, 2, 1.0, (5, 10, 10, 10), bounds)
    earlier = Tally(4, 1, 0.5, (2, 4, 4, 4), bounds)
    assert later.minus(earlier) == Tally(6, 1, 0.5, (3, 6, 6, 6), bounds)
    assert earlier.minus(later) == earlier  # a restarted series counts from zero
    assert later.plus(earlier).buckets == (7, 14, 14, 14)


def test_load_through_a_front_shows_in_its_scraped_metrics() -> None:
    """The front feeds on_request and serves render at /metrics; a load's counts match."""
    metrics = Metrics("n1")
    with StandInFront(
        green_weight=0.5, on_request=metrics.on_request, render=metrics.render
    ) as front:
        mix = [Request("calc", "add", {"a": 1, "b": 2}), Request("calc", "boom", {})]
        report = drive([front.url], mix, 100.0, 4, 0.5)
        text = httpx.get(f"{front.url}/metrics").text
    got = parse(text)
    total = {
        (dict(labels)["colour"], dict(labels)["outcome"]): v
        for (name, labels), v in got.items()
        if name == "tars_requests_total" and dict(labels)["function"] == "add"
    }
    assert report.ok == sum(v for (_, outcome), v in total.items() if outcome == "ok") == 25
    assert report.errors == {"500": 25}
    boom = sum(
        v
        for (name, labels), v in got.items()
        if name == "tars_requests_total" and dict(labels)["function"] == "boom"
    )
    assert boom == 25
    assert set(report.answered_by) == {"v-blue-1", "v-green-2"}
    for version, colours in report.answered_by.items():
        for colour, n in colours.items():
            labels = {"genome": "calc", "function": "add", "version": version, "colour": colour}
            assert value(got, "tars_requests_total", **labels, outcome="ok") == n
