"""`tars log` only reads, and `tars rollback --store` keeps its hands off a swarm node's store.

As the issue found them: `tars log verify|ls` on another application's SQLite file
answered "OK 0 events" and wrote TARS tables into it, an empty file became a store, a
store on read-only media could not be read, and `tars rollback --store` on a swarm
node's store forked it from the swarm.  Every check compares the files' bytes, their
modification times and the folder's listing before and after (root ignores permission
bits, so a chmod alone proves nothing); one test also reads through a real read-only
bind mount where the machine allows one.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from events.store import GenomeStore
from evolution.tree import version_id

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()

V1 = {"g.py": "def f(x):\n    return x + 1\n"}
V2 = {"g.py": "def f(x):\n    return 1 + x\n"}

#: Writes a store of two versions and three cycles, in a process of its own, so the
#: store is closed (its write-ahead log checkpointed) as a node's is after a stop.
BUILD = """
import sys
from events.records import Adoption
from events.store import GenomeStore
from evolution.patch import make_patch
from evolution.tree import version_id
v1, v2 = {v1!r}, {v2!r}
tracking = {tracking!r}
with GenomeStore.open("sqlite:///" + sys.argv[1]) as store:
    store.register("g", "", v1, 1.0, "n1", tracking=tracking)
    store.record_cycle("g", "n1", cycle=1)
    store.adopt("g", Adoption(version=version_id(v2), parent=version_id(v1),
        patch=make_patch(v1, v2), mutator="test", kind="test", fitness_before=1.0,
        fitness_after=0.5, ratio=2.0, low=1.8, high=2.2, evidence={{}}), "n1")
    store.record_cycle("g", "n1", cycle=2)
"""


def build(path: Path, tracking: tuple[str, int] | None = None) -> Path:
    code = BUILD.format(v1=V1, v2=V2, tracking=tracking)
    subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT, check=True, timeout=120)
    return path


def tars(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def state(folder: Path) -> dict[str, tuple[bytes, int] | int]:
    """Every file's bytes and mtime, and the folder's own mtime: any write shows."""
    seen: dict[str, tuple[bytes, int] | int] = {".": folder.stat().st_mtime_ns}
    for path in sorted(folder.iterdir()):
        seen[path.name] = (path.read_bytes(), path.stat().st_mtime_ns)
    return seen


def log_commands(store: Path, out: Path) -> list[list[str]]:
    """Every `tars log` subcommand that reads a store, with arguments that work on ours."""
    s = ["--store", str(store)]
    one, two = version_id(V1)[:12], version_id(V2)[:12]
    return [
        ["log", "ls", *s],
        ["log", "ls", "--all", *s],
        ["log", "show", "1", *s],
        ["log", "diff", one, two, *s],
        ["log", "lineage", *s],
        ["log", "verify", *s],
        ["log", "replay", "--to", two, "--out", str(out / "tree"), *s],
        ["log", "export", "--out", str(out / "events.jsonl"), *s],
    ]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("made") / "store.db")


def test_every_log_command_reads_a_read_only_store_and_writes_nothing(
    made: Path, tmp_path: Path
) -> None:
    media = tmp_path / "media"
    media.mkdir()
    store = media / "store.db"
    shutil.copy2(made, store)
    store.chmod(0o444)
    media.chmod(0o555)
    before = state(media)
    try:
        for command in log_commands(store, tmp_path):
            code, out, err = tars(*command)
            assert code == 0, (command, out, err)
            assert state(media) == before, f"{command} wrote into the store's folder"
    finally:
        media.chmod(0o755)
    assert "OK 4 events" in tars("log", "verify", "--store", str(store))[1]
    exported = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [row["type"] for row in exported][-2:] == ["VersionAdopted", "CycleCompleted"]
    assert (tmp_path / "tree" / "g.py").read_text() == V2["g.py"]


def test_log_reads_through_a_read_only_mount(made: Path, tmp_path: Path) -> None:
    """The kernel refuses every write here, to root too."""
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        pytest.skip("no unshare or mount on this machine")
    probe = subprocess.run(
        ["unshare", "-m", "true"], capture_output=True, text=True, timeout=30, check=False
    )
    if probe.returncode != 0:
        pytest.skip(f"no mount namespace here: {probe.stderr.strip()}")
    media = tmp_path / "media"
    media.mkdir()
    shutil.copy2(made, media / "store.db")
    before = state(media)
    store = media / "store.db"
    script = (
        f'mount --bind "{media}" "{media}" && mount -o remount,ro,bind "{media}" && '
        f'! touch "{media}/probe" 2>/dev/null && '
        f'"{sys.executable}" -m cli.main log verify --store "{store}" && '
        f'"{sys.executable}" -m cli.main log ls --store "{store}"'
    )
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK 4 events" in done.stdout and "VersionAdopted" in done.stdout
    assert state(media) == before


def other_application(path: Path) -> Path:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE users (name TEXT, email TEXT)")
        db.execute("INSERT INTO users VALUES ('ann', 'ann@example.org')")
    return path


def other_eventsourcing_application(path: Path) -> Path:
    """Another eventsourcing application's store: the same tables, other events."""
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE stored_events (originator_id TEXT, originator_version INTEGER, "
            "topic TEXT, state BLOB, PRIMARY KEY (originator_id, originator_version))"
        )
        db.execute("CREATE TABLE tracking (application_name TEXT, notification_id INTEGER)")
        db.execute("INSERT INTO stored_events VALUES ('x', 1, 'shop.domain:Order.Created', x'00')")
    return path


def empty_file(path: Path) -> Path:
    path.write_bytes(b"")
    return path


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (other_application, "is a SQLite database but not a TARS store"),
        (other_eventsourcing_application, "holds another application's events"),
        (empty_file, "is an empty file, not a TARS store"),
    ],
    ids=["another-sqlite-file", "another-eventsourcing-store", "empty-file"],
)
def test_log_refuses_a_file_that_is_not_a_tars_store_and_leaves_it_as_it_was(
    tmp_path: Path, make: object, says: str
) -> None:
    folder = tmp_path / "theirs"
    folder.mkdir()
    target = folder / "app.db"
    make(target)  # type: ignore[operator]
    before = state(folder)
    for command in log_commands(target, tmp_path):
        code, out, err = tars(*command)
        assert code != 0, (command, out)
        lines = [line for line in err.strip().splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), err
        assert str(target) in lines[0] and says in lines[0], (command, lines[0])
        assert "OK" not in out
        assert state(folder) == before, f"{command} wrote into {target}"
    assert not (tmp_path / "tree").exists() and not (tmp_path / "events.jsonl").exists()


def test_log_sees_what_a_running_writer_has_not_checkpointed(tmp_path: Path) -> None:
    """A node keeps its store open: the newest events are still in the write-ahead log."""
    path = tmp_path / "live.db"
    with GenomeStore.open(f"sqlite:///{path}") as live:
        live.register("g", "", V1, 1.0, "n1")
        for cycle in range(1, 4):
            live.record_cycle("g", "n1", cycle=cycle)
        wal = path.with_name(path.name + "-wal")
        assert wal.exists() and wal.stat().st_size > 0  # what this test is about
        main = (path.read_bytes(), path.stat().st_mtime_ns)
        code, out, err = tars("log", "ls", "--store", str(path))
        assert code == 0, err
        assert out.splitlines()[-1].split()[0] == "4" and "cycle 3" in out
        assert "OK 4 events" in tars("log", "verify", "--store", str(path))[1]
        assert (path.read_bytes(), path.stat().st_mtime_ns) == main
        live.record_cycle("g", "n1", cycle=4)  # the writer is not disturbed by the reader
        assert "cycle 4" in tars("log", "ls", "--store", str(path))[1]


def test_rollback_refuses_a_swarm_nodes_store_and_names_config(tmp_path: Path) -> None:
    store = build(tmp_path / "node-store.db", tracking=("ledger", 7))
    before = state(tmp_path)
    code, out, err = tars(
        "rollback", "--genome", "g", "--to", version_id(V1)[:12], "--store", str(store)
    )
    assert code != 0, out
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert str(store) in lines[0] and "belongs to a swarm" in lines[0]
    assert "index 7" in lines[0] and "--config" in lines[0]
    code, out, err = tars("approve", "--genome", "g", "--candidate", "c1", "--store", str(store))
    assert code != 0 and "belongs to a swarm" in err
    assert state(tmp_path) == before
    with GenomeStore.open(f"sqlite:///{store}?mode=ro", create=False) as handle:
        assert handle.head("g").version == version_id(V2)
        assert [e.type for e in handle.log()][-1] == "CycleCompleted"


def test_rollback_still_works_on_a_store_of_no_swarm(tmp_path: Path) -> None:
    store = build(tmp_path / "local.db")
    code, out, err = tars(
        "rollback", "--genome", "g", "--to", version_id(V1)[:12], "--store", str(store)
    )
    assert code == 0, err
    with GenomeStore.open(f"sqlite:///{store}", create=False) as handle:
        assert handle.head("g").version == version_id(V1)


def test_a_store_that_is_not_a_tars_store_is_never_opened_for_writing(tmp_path: Path) -> None:
    """`tars evolve run` and the node open with create=True: still no tables in theirs."""
    target = other_application(tmp_path / "app.db")
    before = target.read_bytes()
    code, _, err = tars(
        "evolve",
        "run",
        "--genome",
        str(Path(__file__).parent / "data" / "tiny"),
        "--store",
        str(target),
        "--cycles",
        "1",
    )
    assert code != 0 and "not a TARS store" in err
    assert target.read_bytes() == before
    with sqlite3.connect(f"file:{target}?mode=ro", uri=True) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master")]
    assert tables == ["users"]
    assert os.listdir(tmp_path) == ["app.db"]
