"""JSON log lines: every stdlib log call comes out as one JSON object with its node.

In the process (a handler on a string buffer) and from a real node process started the
way `tars cluster up` starts it, whose node.log `tars cluster logs` shows readable.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from swarmkit import LocalSwarm
from typer.testing import CliRunner

from cli.main import app
from runtime.launcher import START_MARK
from runtime.logs import bound, configure, readable


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """A JSON handler on the root logger for the test; the old handlers back after it."""
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    buffer = io.StringIO()
    try:
        configure("node-7", "json", stream=buffer)
        yield buffer
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved:
            root.addHandler(handler)
        root.setLevel(level)
        structlog.reset_defaults()


def events(buffer: io.StringIO) -> list[dict[str, object]]:
    text = buffer.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_an_existing_stdlib_call_becomes_one_json_line_with_the_node(lines: io.StringIO) -> None:
    logging.getLogger("tars.node").info("%s: store checked in %.2f s", "node-7", 0.5)
    logging.getLogger("tars.deep.part").debug("not shown at INFO")
    (event,) = events(lines)
    assert event["event"] == "node-7: store checked in 0.50 s"
    assert (event["level"], event["logger"], event["node"]) == ("info", "tars.node", "node-7")
    assert str(event["time"]).endswith("Z") and list(event)[:4] == [
        "time",
        "level",
        "logger",
        "node",
    ]


def test_genome_and_version_ride_along_however_they_are_given(lines: io.StringIO) -> None:
    logging.getLogger("tars.service").warning(
        "worker %d died", 3, extra={"genome": "logstats", "version": "abc123"}
    )
    with bound(genome="tiny", version="v9"):
        structlog.get_logger("tars.deploy").info("weight set", weight=0.1)
        logging.getLogger("tars.deploy").info("plain call inside")
    logging.getLogger("tars.deploy").info("outside", extra={"node": "node-2"})
    first, second, third, fourth = events(lines)
    assert (first["genome"], first["version"], first["event"]) == (
        "logstats",
        "abc123",
        "worker 3 died",
    )
    assert (second["genome"], second["version"], second["weight"]) == ("tiny", "v9", 0.1)
    assert second["node"] == "node-7" and second["logger"] == "tars.deploy"
    assert (third["genome"], third["version"]) == ("tiny", "v9")
    assert "genome" not in fourth and fourth["node"] == "node-2"  # a call may name its node


def test_hostile_text_stays_on_one_line_and_exceptions_are_kept(lines: io.StringIO) -> None:
    hostile = 'line one\n{"level": "critical", "node": "forged"}\r\n\x00 "quoted" \u2028'
    logging.getLogger("tars.x").warning("peer said %s", hostile)
    try:
        raise ValueError("bad input")
    except ValueError:
        logging.getLogger("tars.x").exception("apply failed at %d", 12)
    logging.getLogger("tars.x").info("%s", object())  # not JSON-able: its repr
    first, second, third = events(lines)
    assert first["event"] == f"peer said {hostile}" and first["node"] == "node-7"
    assert second["level"] == "error" and "ValueError: bad input" in str(second["exception"])
    assert "Traceback" in str(second["exception"])
    assert str(third["event"]).startswith("<object object at")


def test_text_format_is_the_old_line() -> None:
    root = logging.getLogger()
    saved = list(root.handlers)
    buffer = io.StringIO()
    try:
        configure("node-7", "text", stream=buffer)
        logging.getLogger("tars.node").warning("hello %s", "there")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved:
            root.addHandler(handler)
        structlog.reset_defaults()
    assert buffer.getvalue().rstrip().endswith("WARNING tars.node: hello there")
    with pytest.raises(ValueError, match="not one of text, json"):
        configure("n", "yaml")


def test_readable_shows_json_lines_as_text_and_leaves_others_alone() -> None:
    line = json.dumps(
        {"time": "2026-12-05T18:00:00.5Z", "level": "warning", "logger": "tars.service",
         "node": "n1", "genome": "g", "version": "v", "event": "worker died",
         "exception": "Traceback\nValueError: x"}
    )  # fmt: skip
    assert readable(line) == (
        "2026-12-05 18:00:00.5 WARNING tars.service: worker died [genome=g version=v]\n"
        "Traceback\nValueError: x"
    )
    for other in ("plain text", "{not json", '{"no": "event"}', "[1, 2]", ""):
        assert readable(other) == other


def test_a_node_started_as_cluster_up_does_logs_json_and_cluster_logs_reads_it(
    tmp_path: Path,
) -> None:
    swarm = LocalSwarm(tmp_path, nodes=1, cycles=1)
    try:
        swarm.up()
        assert swarm.status("node-1") is not None
    finally:
        swarm.down()
    text = swarm.config.log_path("node-1").read_text()
    written = [
        line for line in text.splitlines()
        if line.strip() and not line.startswith(START_MARK.strip("\n"))
    ]  # fmt: skip
    parsed = [json.loads(line) for line in written]  # every line the node wrote is JSON
    assert parsed and all(event["node"] == "node-1" for event in parsed)
    said = [event["event"] for event in parsed]
    assert any("node-1 ready on tcp://" in str(e) for e in said)
    assert "node-1 stopped cleanly" in said
    runner = CliRunner()
    path = str(swarm.config.path)
    shown = runner.invoke(app, ["cluster", "logs", "--config", path, "--id", "node-1"])
    assert shown.exit_code == 0, shown.output
    assert "INFO tars.node: node-1 stopped cleanly" in shown.output
    assert not any(line.startswith("{") for line in shown.output.splitlines())
    raw = runner.invoke(app, ["cluster", "logs", "--config", path, "--id", "node-1", "--raw"])
    assert raw.output.splitlines()[-1] == written[-1]


def test_an_unknown_log_format_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "node",
            "start",
            "--config",
            str(tmp_path / "none.yml"),
            "--id",
            "n",
            "--log-format",
            "xml",
        ],
    )
    assert result.exit_code == 1 and "unknown log format 'xml'" in result.output
