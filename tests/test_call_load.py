"""`tars call` and `tars load` against a real aiohttp server speaking the front's contract.

The server (tests/frontkit.py) stands in for the node's front, which lives in
runtime/service/front.py: the same routes, the same error bodies, blue and green answers.
What the clients report is compared with what the server counted.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from frontkit import StandInFront
from typer.testing import CliRunner

from cli.main import app
from cli.service import parse_args
from evolution.errors import ConfigError, ServiceError
from runtime.service.client import call
from runtime.service.load import Request, drive, generated_mix, read_mix

runner = CliRunner()


@pytest.fixture
def front() -> Iterator[StandInFront]:
    with StandInFront(green_weight=0.3) as server:
        yield server


def tars(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "300"})
    return result.exit_code, result.output


# -- tars call --------------------------------------------------------------------------


def test_call_prints_the_result_the_version_and_the_colour(front: StandInFront) -> None:
    code, out = tars("call", "calc", "add", "a=2", "b=40", "--url", front.url)
    assert code == 0, out
    assert "42" in out and "version v-blue-1, blue" in out
    assert front.seen[("add", 200)] == 1


def test_values_are_json_when_they_parse_and_strings_otherwise(front: StandInFront) -> None:
    code, out = tars("call", "calc", "echo", "text=ab", "times=3", "--url", front.url, "--json")
    assert code == 0, out
    assert json.loads(out)["result"] == "ababab"
    assert parse_args(["a=[1, 2]", "b=x y", "c=null", "d="], None) == {
        "a": [1, 2], "b": "x y", "c": None, "d": "",
    }  # fmt: skip
    # words win over --json-args
    code, out = tars(
        "call",
        "calc",
        "add",
        "--json-args",
        '{"a": 1, "b": 2}',
        "b=5",
        "--url",
        front.url,
        "--json",
    )
    assert code == 0 and json.loads(out)["result"] == 6, out


@pytest.mark.parametrize(
    "bad", [["a2"], ["2a=1"], ["--json-args", "[1]"], ["--json-args", "{nope"]]
)
def test_malformed_arguments_are_refused_before_any_request(
    front: StandInFront, bad: list[str]
) -> None:
    code, out = tars("call", "calc", "add", *bad, "--url", front.url)
    assert code != 0 and "error:" in out, out
    assert sum(front.seen.values()) == 0


@pytest.mark.parametrize(
    ("args", "status", "shown"),
    [
        (["calc", "add", "a=1"], "400", "missing argument b — add takes a: int, b: int"),
        (["calc", "add", "a=1", "b=2", "c=3"], "400", "unexpected argument(s) c"),
        (["calc", "echo", "text=5"], "400", "argument text is not str"),  # 5 is JSON: an int
        (["calc", "nope"], "400", "functions: add, echo, boom, nap"),
        (["nogenome", "add"], "404", "no genome 'nogenome' on n1 — genomes served: calc"),
        (["calc", "boom"], "500", "ValueError: boom on purpose — the genome's code raised"),
    ],
)
def test_front_errors_are_printed_with_their_hint(
    front: StandInFront, args: list[str], status: str, shown: str
) -> None:
    code, out = tars("call", *args, "--url", front.url)
    assert code == 1, out
    assert f" {status} " in out and shown in " ".join(out.split()), out


def test_no_worker_ready_is_a_503_with_its_hint() -> None:
    with StandInFront(ready=False) as server, pytest.raises(ServiceError) as caught:
        call(server.url, "calc", "add", {"a": 1, "b": 2})
    assert "503 no worker of calc is ready" in caught.value.message
    assert caught.value.hint == "retry in a moment"


def test_the_request_header_is_echoed(front: StandInFront) -> None:
    answer = call(front.url, "calc", "add", {"a": 1, "b": 1}, request="mine-7")
    assert answer.request == "mine-7" and front.request_ids == ["mine-7"]


def test_a_node_without_an_http_port_is_named(tmp_path: Path) -> None:
    path = tmp_path / "cluster.yml"
    path.write_text("nodes:\n  - {id: node-1, port: 7101}\n  - {id: node-2, port: 7102}\n")
    code, out = tars("call", "calc", "add", "a=1", "b=2", "--config", str(path), "--node", "node-2")
    assert code == 1 and "node node-2 of" in out and "has no http port" in out, out
    assert "add `http: PORT` to node-2" in " ".join(out.split())  # and the node is down
    code, out = tars("load", "calc", "--config", str(path), "--duration", "0.2")
    assert code == 1 and "no node of" in out and "has an http port or says one" in out, out


def test_a_dead_front_is_a_transport_error(tmp_path: Path) -> None:
    port = _closed_port()
    code, out = tars("call", "calc", "add", "a=1", "b=2", "--url", f"http://127.0.0.1:{port}")
    assert code == 1 and "ConnectError" in out and "is the node up?" in out, out


# -- tars load --------------------------------------------------------------------------


def test_load_counts_match_what_the_front_saw(front: StandInFront) -> None:
    """The generated mix (one request per function, its example) at 200/s for a second."""
    code, out = tars(
        "load", "calc", "--url", front.url, "--rate", "200", "--duration", "1",
        "--concurrency", "8", "--json",
    )  # fmt: skip
    assert code == 0, out
    report = json.loads(out)
    seen = front.seen
    assert report["sent"] == sum(seen.values()) == 200  # due at i/200 for i < 200
    assert report["ok"] == seen[("add", 200)] + seen[("echo", 200)] + seen[("nap", 200)]
    assert report["errors"] == {"500": seen[("boom", 500)]} and seen[("boom", 500)] == 50
    assert report["lost"] == 0 and report["unsent"] == 0
    by = report["answered_by"]
    assert set(by) == {"v-blue-1", "v-green-2"}
    assert by["v-blue-1"]["blue"] + by["v-green-2"]["green"] == report["ok"]
    assert by["v-green-2"]["green"] > 0 and by["v-blue-1"]["blue"] > by["v-green-2"]["green"]
    assert 0 < report["p50"] <= report["p90"] <= report["p99"]
    assert len(set(front.request_ids)) == 200  # every request named once


def test_load_prints_a_readable_report(front: StandInFront) -> None:
    code, out = tars("load", "calc", "--url", front.url, "--rate", "100", "--duration", "0.5")
    assert code == 0, out
    assert "50 requests in" in out and "latency p50" in out
    assert "errors by status: 500:" in out and "answered by v-blue-1: blue" in out


def test_a_recorded_mix_is_replayed_and_its_bad_requests_counted(
    front: StandInFront, tmp_path: Path
) -> None:
    mix = tmp_path / "mix.jsonl"
    lines = [{"function": "add", "args": {"a": 1, "b": 2}}, {"function": "add", "args": {"a": "x"}}]
    mix.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    code, out = tars(
        "load", "calc", "--url", front.url, "--mix", str(mix), "--rate", "0",
        "--concurrency", "2", "--duration", "0.3", "--json",
    )  # fmt: skip
    assert code == 0, out
    report = json.loads(out)
    assert report["sent"] == sum(front.seen.values()) > 0
    assert report["ok"] == front.seen[("add", 200)]
    assert report["errors"] == {"400": front.seen[("add", 400)]}
    assert abs(report["ok"] - report["errors"]["400"]) <= 2  # the two lines alternate


@pytest.mark.parametrize(
    ("text", "why"),
    [("{nope", "is not JSON"), ('{"args": {}}', "is not a request"), ("", "holds no request")],
)
def test_a_malformed_mix_is_refused_with_its_line(tmp_path: Path, text: str, why: str) -> None:
    mix = tmp_path / "mix.jsonl"
    mix.write_text(text)
    with pytest.raises(ConfigError, match=why):
        read_mix(mix, "calc")


def test_load_spreads_over_every_front() -> None:
    with StandInFront("n1") as one, StandInFront("n2") as two:
        mix = [Request("calc", "add", {"a": 1, "b": 2})]
        report = drive([one.url, two.url], mix, 100.0, 4, 0.4)
    assert report.by_url == {one.url: 20, two.url: 20}
    assert one.seen[("add", 200)] == two.seen[("add", 200)] == 20 and report.ok == 40


def test_requests_to_a_dead_front_are_lost_not_hidden() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    report = drive([url], [Request("calc", "add", {})], 50.0, 4, 0.2)
    assert report.sent == 10 and report.lost == 10 and report.ok == 0
    assert report.errors == {"connect": 10}


def test_open_loop_requests_held_by_the_concurrency_cap_are_counted(front: StandInFront) -> None:
    """A slow front: requests keep coming due; those never let out are `unsent`, none vanish."""
    mix = [Request("calc", "nap", {"seconds": 0.3})]
    report = drive([front.url], mix, 100.0, 2, 0.3, timeout=2.0)
    assert report.sent + report.unsent == 30
    assert report.unsent > 0 and 0 < report.ok <= front.seen[("nap", 200)] <= report.sent
    assert report.ok + report.lost == report.sent  # cut off at the end: lost, not vanished


def test_a_generated_mix_needs_examples() -> None:
    assert generated_mix("g", {"functions": {"f": {"args": {}, "example": {}}}}) == [
        Request("g", "f", {})
    ]
    with pytest.raises(ConfigError, match="no function with an example"):
        generated_mix("g", {"functions": {"f": {"args": {"x": "int"}}}})


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_node_without_a_fixed_port_is_asked_for_the_address_it_serves(tmp_path: Path) -> None:
    """cluster.yml without `http`: the running node's admin status says where it serves."""
    from swarmkit import TINY

    from cli.demo import write_cluster
    from runtime.config import load_cluster
    from runtime.node_transport import node_transport

    path = write_cluster(tmp_path, 1, TINY, 1, 1, 1, 1)
    lines = path.read_text().splitlines(keepends=True)  # a cluster.yml without `http:`
    path.write_text("".join(line for line in lines if not line.strip().startswith("http:")))
    load_cluster(path).ensure_keys()
    config = load_cluster(path)
    asked: list[object] = []
    with StandInFront("node-1") as server:

        def admin(sender: str, body: object) -> object:
            asked.append((sender, body))
            return {"node": "node-1", "http": server.url}

        transport = node_transport(config, "node-1")
        transport.serve("admin", admin)
        transport.start()
        try:
            code, out = tars("call", "calc", "add", "a=1", "b=2", "--config", str(path), "--json")
        finally:
            transport.stop()
    assert code == 0, out
    assert json.loads(out)["result"] == 3
    assert asked == [("admin", {"op": "status"})]


def test_ctrl_c_ends_a_load_with_the_report_so_far(front: StandInFront) -> None:
    import signal
    import subprocess
    import sys

    from runtime.testing import wait_until

    argv = [sys.executable, "-m", "cli.main", "load", "calc", "--url", front.url, "--rate", "50",
            "--duration", "120", "--json"]  # fmt: skip
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: sum(front.seen.values()) >= 5, "the load to begin")
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    report = json.loads(out)
    assert report["interrupted"] is True
    answered = report["ok"] + report["errors"].get("500", 0)
    assert 1 <= answered <= sum(front.seen.values()) <= report["sent"]  # the last may be cut
    assert report["sent"] == answered + report["errors"].get("interrupted", 0)


def test_progress_is_reported_while_the_load_runs(front: StandInFront) -> None:
    from runtime.service.load import Progress

    seen: list[Progress] = []
    report = drive(
        [front.url], [Request("calc", "add", {"a": 1, "b": 2})], 100.0, 4, 0.5, seen.append
    )
    assert len(seen) >= 2 and seen[0].sent <= seen[-1].sent
    assert [p.answered for p in seen] == sorted(p.answered for p in seen)  # never goes back
    last = seen[-1]
    assert (last.sent, last.answered, last.errors, last.in_flight) == (report.sent, 50, 0, 0)
