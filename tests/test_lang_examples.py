"""The four shipped examples run end to end with `tars run`, kept to seconds: each is copied
as it is, pointed at the tiny genome (tests/data/tiny) instead of logstats and cut to one
cycle; the model is the scripted server (tests/llmkit.py)."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest
from langkit import tars

from tests.llmkit import GOOD_TINY_REPLY, Turn, scripted_server

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "data" / "tiny"
EXAMPLES = ROOT / "examples"


def example(name: str, tmp: Path) -> Path:
    """The example in ``tmp`` (with its data), on the tiny genome, one cycle per campaign."""
    shutil.copytree(EXAMPLES / "data", tmp / "data")
    text = (EXAMPLES / name).read_text(encoding="utf-8")
    text = text.replace('"../genomes/logstats/genome.toml"', f'"{TINY}/genome.toml"')
    text = text.replace("genome logstats", "genome tiny").replace("evolve logstats", "evolve tiny")
    text = re.sub(r"cycles = \d+", "cycles = 1", text)
    if "cycles = " not in text:
        text = text.replace("evolve tiny {\n", "evolve tiny {\n  cycles = 1\n")
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return path


def run(path: Path, tmp: Path, *more: str) -> tuple[int, str, str]:
    return tars("run", str(path), "--store", str(tmp / "s.db"), "--workdir", str(tmp / "w"), *more)


def test_every_example_checks() -> None:
    for path in sorted(EXAMPLES.glob("*.tars")):
        code, out, err = tars("check", str(path))
        assert code == 0, out + err


def test_evolve_demo_hands_its_prompt_to_the_model(tmp_path: Path) -> None:
    path = example("evolve_demo.tars", tmp_path)
    with scripted_server() as server:
        (tmp_path / "llm-scripted.yml").write_text(
            (EXAMPLES / "llm-scripted.yml")
            .read_text()
            .replace("http://127.0.0.1:8399/v1", server.url)
        )
        server.script(*[Turn(reply=GOOD_TINY_REPLY)] * 6)
        code, out, err = run(path, tmp_path)
    assert code == 0, out + err
    asked = [r.shown for r in server.received]
    assert asked and all("You are making `" in a and "without changing" in a for a in asked)
    assert "Answer with SEARCH/REPLACE blocks only." in asked[0]
    assert re.search(r"adopted \S+: [0-9.]+x", out) or "refused" in out, out


def test_typed_source_feeds_the_benchmark(tmp_path: Path) -> None:
    path = example("typed_source.tars", tmp_path)
    code, out, err = run(path, tmp_path)
    assert code == 0, out + err
    assert "tiny: benchmark fed 3 lines from data/access.jsonl" in out
    with sqlite3.connect(tmp_path / "s.db") as con:  # the registered tree holds the input
        assert con.execute("select count(*) from stored_events").fetchone()[0] > 0
    fed = (tmp_path / "w" / "input" / "tiny" / "input.jsonl").read_text().splitlines()
    assert [json.loads(line)["status"] for line in fed] == [200, 201, 500]
    broken = (
        (tmp_path / "data" / "access.jsonl").read_text().replace('"status": 201', '"status": "ok"')
    )
    (tmp_path / "data" / "access.jsonl").write_text(broken)
    code, _, err = run(path, tmp_path)
    assert code == 1 and "line 2: field `status`: expected int, found 'ok'" in err, err


def test_deploy_on_gain_deploys_or_notifies(tmp_path: Path) -> None:
    path = example("deploy_on_gain.tars", tmp_path)
    code, out, err = run(path, tmp_path)
    assert code == 0, out + err
    # the tiny genome's first cycle gains ~1.9x: over 1.5, a canary with the script's steps
    assert "would deploy tiny" in out and "canary(steps=[1, 10, 50, 100], interval=30.0)" in out


@pytest.mark.slow
def test_tune_self_writes_a_version_that_rollback_undoes(tmp_path: Path) -> None:
    path = example("tune_self.tars", tmp_path)
    original = path.read_text()
    code, out, err = run(path, tmp_path, "--write")
    assert code == 0, out + err
    assert out.count("tune: ") >= 3, out  # the current values and two trials, each proven
    code, lineage, err = tars(
        "log", "lineage", "--genome", "script-tune-self", "--store", str(tmp_path / "s.db")
    )
    assert code == 0, err
    first = re.search(r"([0-9a-f]{12}) registered", lineage)
    assert first, lineage
    if "tune: wrote the improved script" in out:
        changed = [
            a
            for a, b in zip(original.splitlines(), path.read_text().splitlines(), strict=True)
            if a != b
        ]
        assert changed and all(line.startswith("tune ") for line in changed)
        code, _, err = tars(
            "rollback",
            "--genome",
            "script-tune-self",
            "--to",
            first.group(1),
            "--store",
            str(tmp_path / "s.db"),
        )
        assert code == 0, err
    else:
        assert path.read_text() == original
