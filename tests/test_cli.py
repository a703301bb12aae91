"""The `tars` command: bad input gets one line naming the thing and the fix, non-zero exit."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app

ROOT = Path(__file__).resolve().parents[1]
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
    code, out, err = tars(
        "evolve",
        "run",
        "--genome",
        str(TINY),
        "--store",
        str(store),
        "--cycles",
        "2",
        "--candidates",
        "2",
    )
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
    code, _, err = tars(
        "evolve", "run", "--genome", str(TINY), "--store", "/proc/tars-nowhere/store.db"
    )
    assert code != 0
    one_line_error(err, "/proc/tars-nowhere")


def test_patch_that_does_not_apply(tmp_path: Path) -> None:
    patch = tmp_path / "bad.patch"
    patch.write_text(
        "--- a/tiny/core.py\n+++ b/tiny/core.py\n@@ -1,1 +1,1 @@\n-not the first line\n+x\n"
    )
    code, _, err = tars(
        "evolve",
        "validate",
        "--genome",
        str(TINY),
        "--patch",
        str(patch),
        "--store",
        str(tmp_path / "s.db"),
    )
    assert code != 0
    one_line_error(err, "tiny/core.py", "does not apply", "rebase")


def test_store_that_does_not_exist(tmp_path: Path) -> None:
    code, _, err = tars("log", "ls", "--store", str(tmp_path / "none.db"))
    assert code != 0
    one_line_error(err, "none.db", "does not exist")
    assert not (tmp_path / "none.db").exists()


def test_unknown_version(evolved: Path, tmp_path: Path) -> None:
    code, _, err = tars(
        "log", "replay", "--to", "deadbeef", "--out", str(tmp_path / "o"), "--store", str(evolved)
    )
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
    code, out, err = tars(
        "log", "replay", "--to", head[:12], "--out", str(tmp_path / "tree"), "--store", str(evolved)
    )
    assert code == 0, err
    assert "tree hash verified" in out
    assert (tmp_path / "tree" / "tiny" / "core.py").is_file()
    code, out, _ = tars("log", "lineage", "--store", str(evolved))
    assert code == 0 and head[:12] in out


def test_log_ls_lists_the_newest_events_unless_all(tmp_path: Path) -> None:
    from events.store import GenomeStore

    store = tmp_path / "many.db"
    with GenomeStore.open(f"sqlite:///{store}") as handle:
        handle.register("g", "", {"g.py": "x = 0\n"}, 1.0, "n1")
        for cycle in range(1, 80):
            handle.record_cycle("g", "n1", cycle=cycle)
    code, out, err = tars("log", "ls", "--store", str(store))
    lines = out.splitlines()
    assert code == 0 and len(lines) == 50
    assert [int(line.split()[0]) for line in lines] == list(
        range(31, 81)
    )  # the newest, oldest first
    assert "30 earlier events not shown" in err and "--all" in err
    code, out, err = tars("log", "ls", "--store", str(store), "--limit", "3")
    assert code == 0 and [int(line.split()[0]) for line in out.splitlines()] == [78, 79, 80]
    assert "77 earlier events" in err
    code, out, err = tars("log", "ls", "--store", str(store), "--all")
    assert code == 0 and [int(line.split()[0]) for line in out.splitlines()] == list(range(1, 81))
    assert err == ""
    code, _, err = tars("log", "ls", "--store", str(store), "--all", "--limit", "3")
    assert code == 1
    one_line_error(err, "--all and --limit")
    code, _, err = tars("log", "ls", "--store", str(store), "--limit", "x")
    assert code != 0 and "--limit" in err


def test_tars_log_imports_no_pydantic_nor_node_machinery(evolved: Path) -> None:
    """Start-up is most of `tars log ls`: typer would import pydantic to convert the options."""
    code = (
        "import sys\n"
        "from cli.main import main\n"
        f"sys.argv = ['tars', 'log', 'ls', '--store', {str(evolved)!r}, '--limit', '3']\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "heavy = ['pydantic', 'libcst', 'pykka', 'zmq', 'yaml', 'actors', 'runtime.sandbox', 'runtime.config']\n"
        "print('LOADED', [m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.splitlines()[-1] == "LOADED []", out.stdout + out.stderr
    assert len(out.stdout.splitlines()) == 4  # three events, then the check


def test_verify_names_an_edited_event(evolved: Path, tmp_path: Path) -> None:
    copy = tmp_path / "edited.db"
    shutil.copy(evolved, copy)
    with sqlite3.connect(copy) as db:
        table = "stored_events"
        rowid, state = db.execute(
            f"SELECT rowid, state FROM {table} ORDER BY rowid LIMIT 1 OFFSET 2"
        ).fetchone()
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


def test_cluster_status_says_where_each_log_starts() -> None:
    from cli.cluster_view import log_cell as _log

    assert _log({"log": {"snapshot_index": 0}}) == "whole"
    assert _log({"log": {"snapshot_index": 4811}, "last_transfer": None}) == "from 4811"
    fetched = {"peer": "node-2", "index": 4900, "events": 64, "size": 10, "seconds": 0.1}
    assert (
        _log({"log": {"snapshot_index": 4811}, "last_transfer": fetched}) == "from 4811\nfetched 64"
    )
    assert _log({}) == "whole"  # a node of an older version sends no log section
