"""The `tars` command: bad input gets one line naming the thing and the fix, non-zero exit."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app

TINY = Path(__file__).parent / "data" / "tiny"
runner = CliRunner()


def tars(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def one_line_error(stderr: str, *needles: str) -> None:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error:")
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def evolved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store after two cycles of the tiny genome (shared by the read-only log tests)."""
    store = tmp_path_factory.mktemp("evolved") / "store.db"
    code, out, err = tars("evolve", "run", "--genome", str(TINY), "--store", str(store), "--cycles", "2", "--candidates", "2")
    assert code == 0, out + err
    return store


def test_missing_manifest_key(tmp_path: Path) -> None:
    genome = tmp_path / "g"
    shutil.copytree(TINY, genome)
    manifest = genome / "genome.toml"
    manifest.write_text(manifest.read_text().replace('metric = "seconds"\n', ""))
    code, _, err = tars("evolve", "run", "--genome", str(genome), "--store", str(tmp_path / "s.db"))
    assert code != 0
    one_line_error(err, "genome.toml", "fitness.metric", "add it")


def test_unwritable_store_path(tmp_path: Path) -> None:
    code, _, err = tars("evolve", "run", "--genome", str(TINY), "--store", "/proc/tars-nowhere/store.db")
    assert code != 0
    one_line_error(err, "/proc/tars-nowhere")


def test_patch_that_does_not_apply(tmp_path: Path) -> None:
    patch = tmp_path / "bad.patch"
    patch.write_text("--- a/tiny/core.py\n+++ b/tiny/core.py\n@@ -1,1 +1,1 @@\n-not the first line\n+x\n")
    code, _, err = tars("evolve", "validate", "--genome", str(TINY), "--patch", str(patch), "--store", str(tmp_path / "s.db"))
    assert code != 0
    one_line_error(err, "tiny/core.py", "does not apply", "rebase")


def test_store_that_does_not_exist(tmp_path: Path) -> None:
    code, _, err = tars("log", "ls", "--store", str(tmp_path / "none.db"))
    assert code != 0
    one_line_error(err, "none.db", "does not exist")
    assert not (tmp_path / "none.db").exists()


def test_unknown_version(evolved: Path, tmp_path: Path) -> None:
    code, _, err = tars("log", "replay", "--to", "deadbeef", "--out", str(tmp_path / "o"), "--store", str(evolved))
    assert code != 0
    one_line_error(err, "deadbeef", "tars log lineage")
    code, _, err = tars("rollback", "--genome", "tiny", "--to", "deadbeef", "--store", str(evolved))
    assert code != 0
    one_line_error(err, "deadbeef")
    assert not (tmp_path / "o").exists()


def test_log_commands_on_an_evolved_store(evolved: Path, tmp_path: Path) -> None:
    code, out, _ = tars("log", "ls", "--store", str(evolved))
    assert code == 0 and "Registered" in out and "CycleCompleted" in out
    code, out, _ = tars("log", "verify", "--store", str(evolved))
    assert code == 0 and "OK" in out
    code, out, _ = tars("log", "export", "--format", "jsonl", "--store", str(evolved))
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["seq"] for r in rows] == sorted(r["seq"] for r in rows)
    assert all({"seq", "type", "genome", "version", "parent"} <= set(r) for r in rows)
    adoptions = [r for r in rows if r["type"] == "VersionAdopted"]
    assert adoptions and all("fitness_before" in r and "fitness_after" in r for r in adoptions)
    head = adoptions[-1]["version"]
    code, out, err = tars("log", "replay", "--to", head[:12], "--out", str(tmp_path / "tree"), "--store", str(evolved))
    assert code == 0, err
    assert "tree hash verified" in out
    assert (tmp_path / "tree" / "tiny" / "core.py").is_file()
    code, out, _ = tars("log", "lineage", "--store", str(evolved))
    assert code == 0 and head[:12] in out


def test_verify_names_an_edited_event(evolved: Path, tmp_path: Path) -> None:
    copy = tmp_path / "edited.db"
    shutil.copy(evolved, copy)
    with sqlite3.connect(copy) as db:
        table = "stored_events"
        rowid, state = db.execute(f"SELECT rowid, state FROM {table} ORDER BY rowid LIMIT 1 OFFSET 2").fetchone()
        edited = bytearray(state)
        edited[len(edited) // 2] ^= 0x01
        db.execute(f"UPDATE {table} SET state = ? WHERE rowid = ?", (bytes(edited), rowid))
    code, out, _ = tars("log", "verify", "--store", str(copy))
    assert code == 1
    assert "FAILED" in out and "seq 3" in out


def test_rollback_appends_and_erases_nothing(evolved: Path, tmp_path: Path) -> None:
    copy = tmp_path / "rb.db"
    shutil.copy(evolved, copy)
    _, before, _ = tars("log", "export", "--store", str(copy))
    first = json.loads(before.splitlines()[0])["version"]
    code, out, err = tars("rollback", "--genome", "tiny", "--to", first[:12], "--store", str(copy))
    assert code == 0, err
    _, after, _ = tars("log", "export", "--store", str(copy))
    assert after.startswith(before)
    assert json.loads(after.splitlines()[-1])["type"] == "RolledBack"
