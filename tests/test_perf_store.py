"""The store's fast paths give what the plain paths give.

* writes reuse the lineage the store saved last instead of reloading it; another writer
  in between must still be seen (a conflict, or a refusal re-checked on a fresh load);
* ``log_rows`` lists exactly what ``log`` lists, times as nanoseconds;
* ``log_tail`` gives the end of what ``log_rows`` lists, and how many events come before;
* ``tars log ls`` prints exactly the lines the plain per-entry formatting printed (the
  newest ``DEFAULT_LIMIT``, or every one with ``--all``).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cli.log import DEFAULT_LIMIT, _summary, ls
from events.chain import micros
from events.records import Adoption, CandidateRecord, Held, LogEntry
from events.store import GenomeStore
from evolution.errors import PolicyError
from evolution.patch import make_patch
from evolution.tree import short, version_id

GENOME = "g"
TREE0 = {"g/core.py": "def f(x):\n    return x\n\nLIMIT = 0\n"}


def evolve(tree: dict[str, str], i: int) -> dict[str, str]:
    return {"g/core.py": tree["g/core.py"].rsplit("LIMIT = ", 1)[0] + f"LIMIT = {i}\n"}


def record(tree: dict[str, str], new: dict[str, str], verdict: str = "reject") -> CandidateRecord:
    return CandidateRecord(
        version_id(new),
        version_id(tree),
        make_patch(tree, new),
        "tune",
        "constant",
        verdict,
        ["no gain"],
        1.01,
        0.97,
        1.04,
        True,
    )


def adoption(tree: dict[str, str], new: dict[str, str]) -> Adoption:
    return Adoption(
        version_id(new),
        version_id(tree),
        make_patch(tree, new),
        "tune",
        "constant",
        1.0,
        0.9,
        1.11,
        1.05,
        1.2,
        {"note": "ok"},
    )


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def two(url: str) -> Iterator[tuple[GenomeStore, GenomeStore]]:
    """Two store objects on one SQLite file: two writers (a node and the CLI, say)."""
    a = GenomeStore.open(url)
    a.register(GENOME, "[genome]\n", TREE0, 1.0, "n1")
    b = GenomeStore.open(url)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def test_a_write_by_another_writer_is_not_lost(two: tuple[GenomeStore, GenomeStore]) -> None:
    a, b = two
    t1, t2, t3 = evolve(TREE0, 1), evolve(TREE0, 2), evolve(TREE0, 3)
    a.record_cycle(GENOME, "n1", evaluated=[record(TREE0, t1)], cycle=1)  # a keeps its lineage
    b.record_cycle(GENOME, "n2", evaluated=[record(TREE0, t2)], cycle=2)
    a.record_cycle(GENOME, "n1", evaluated=[record(TREE0, t3)], cycle=3)  # must build on b's write
    events = list(a.log(genome=GENOME))
    assert [(e.type, e.node) for e in events] == [
        ("Registered", "n1"),
        ("CandidateEvaluated", "n1"),
        ("CycleCompleted", "n1"),
        ("CandidateEvaluated", "n2"),
        ("CycleCompleted", "n2"),
        ("CandidateEvaluated", "n1"),
        ("CycleCompleted", "n1"),
    ]
    assert [e.position for e in events] == list(range(1, 8))
    assert a.head(GENOME).cycles_completed == b.head(GENOME).cycles_completed == 3
    assert a.verify().events == 7


def test_a_refusal_made_on_stale_state_is_checked_again(
    two: tuple[GenomeStore, GenomeStore],
) -> None:
    a, b = two
    new = evolve(TREE0, 1)
    a.record_cycle(GENOME, "n1", evaluated=[record(TREE0, evolve(TREE0, 9))], cycle=1)
    held = Held(
        version_id(new), version_id(TREE0), make_patch(TREE0, new), "llm", "rewrite", ["big"], {}
    )
    b.record_cycle(GENOME, "n2", evaluated=[record(TREE0, new, "hold")], held=[held], cycle=2)
    # a's own last lineage has no such candidate; the fresh one does
    assert a.approve(GENOME, held.candidate, "cli") == held
    with pytest.raises(PolicyError):
        a.approve(GENOME, "nothing", "cli")
    # b adopts; a's adoption against the old head must be refused on fresh state too
    t2 = evolve(TREE0, 2)
    b.adopt(GENOME, adoption(TREE0, t2), "n2")
    a.adopt(GENOME, adoption(t2, evolve(TREE0, 3)), "n1")
    assert b.head(GENOME).version == version_id(evolve(TREE0, 3))
    assert a.verify().events == sum(1 for _ in a.log())


def test_a_decision_that_stores_nothing_is_made_on_fresh_state(
    two: tuple[GenomeStore, GenomeStore],
) -> None:
    a, b = two
    a.record_cycle(GENOME, "n1", cycle=1)
    b.record_cycle(GENOME, "n2", cycle=2)
    seen: list[int] = []

    def look(lineage: object) -> int:
        count = int(lineage.cycles_completed)  # type: ignore[attr-defined]
        seen.append(count)
        return count

    assert a.transact(GENOME, look) == 2
    assert seen[-1] == 2


def test_commit_of_a_loaded_lineage_then_a_write(url: str) -> None:
    with GenomeStore.open(url) as store:
        store.register(GENOME, "", TREE0, 1.0, "n1")
        store.record_cycle(GENOME, "n1", cycle=1)
        lineage = store.load(GENOME)
        lineage.complete_cycle(2, None, 0, 0, "ledger")
        store.commit([lineage], ("ledger", 1))
        store.record_cycle(GENOME, "n1", cycle=3)
        assert store.head(GENOME).cycles_completed == 3
        assert store.applied("ledger") == 1
        assert store.verify().events == 4


def test_log_rows_list_what_log_lists(url: str) -> None:
    with GenomeStore.open(url) as store:
        store.register(GENOME, "", TREE0, 1.0, "n1")
        store.register("other", "", {"a.py": "x = 1\n"}, None, "n9")
        tree = TREE0
        for i in range(1, 4):
            new = evolve(TREE0, i)
            store.record_cycle(
                GENOME,
                "n1",
                evaluated=[record(tree, new, "adopt")],
                adopted=adoption(tree, new),
                cycle=i,
            )
            tree = new
        store.rollback(GENOME, version_id(TREE0), "regression", "n2")
        for genome, start, limit in (
            (None, 1, None),
            (GENOME, 1, None),
            ("other", 1, None),
            (None, 4, 3),
            (None, 1, 0),
        ):
            entries = list(store.log(genome=genome, start=start, limit=limit))
            rows = list(store.log_rows(genome=genome, start=start, limit=limit))
            assert len(rows) == len(entries)
            for entry, (seq, kind, name, version, parent, time_ns, node, data, position) in zip(
                entries, rows, strict=True
            ):
                assert (
                    entry.seq,
                    entry.type,
                    entry.genome,
                    entry.version,
                    entry.parent,
                    entry.node,
                    entry.data,
                    entry.position,
                ) == (
                    seq,
                    kind,
                    name,
                    version,
                    parent,
                    node,
                    data,
                    position,
                )
                assert micros(entry.time) == time_ns // 1000
        with pytest.raises(Exception, match="nope"):
            store.log_rows(genome="nope")


def reference_ls(entries: list[LogEntry]) -> str:
    """`tars log ls` as first written: one ``LogEntry`` and one strftime-free format per line."""
    return "".join(
        f"{e.seq:>7} {e.time.isoformat(' ', 'seconds')[:19]} {e.type:<18} {e.genome:<12} "
        f"{(e.version or '')[:12]:<12} {e.node:<8} {_summary(e)}\n"
        for e in entries
    )


def test_ls_prints_what_it_printed(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    with GenomeStore.open(f"sqlite:///{path}") as store:
        store.register(GENOME, "", TREE0, 1.0, "node-1")
        tree = TREE0
        for i in range(1, 40):
            new = evolve(TREE0, i)
            at = datetime(
                2025, 1, 1, 12, 0, i // 3, i * 1000, tzinfo=UTC
            )  # several events per second
            store.record_cycle(
                GENOME,
                "node-1",
                evaluated=[record(tree, new, "adopt")],
                adopted=adoption(tree, new),
                cycle=i,
                at=at,
            )
            tree = new
        store.rollback(GENOME, version_id(TREE0), "a reason", "cli")
        entries = list(store.log())
    for genome, limit, every in ((None, None, True), (GENOME, 7, False), (None, None, False)):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            ls(store=str(path), genome=genome, limit=limit, every=every)
        shown = entries if every else entries[-(limit or DEFAULT_LIMIT) :]
        assert out.getvalue() == reference_ls(shown)
        if every:
            assert err.getvalue() == ""
        else:  # the newest events, and a note on stderr saying how many were left out
            assert shown[-1].seq == entries[-1].seq
            assert f"{len(entries) - len(shown):,} earlier events not shown" in err.getvalue()
            assert "--all" in err.getvalue()
    assert short(version_id(TREE0)) in out.getvalue()  # the rollback, the newest event


@pytest.mark.parametrize(
    "backend", ["sqlite", "memory"]
)  # the fast SQLite reader and the generic one
def test_log_tail_is_the_end_of_log_rows(url: str, backend: str) -> None:
    with GenomeStore.open(url if backend == "sqlite" else "memory://") as store:
        assert store.log_tail(5) == ([], 0)
        store.register(GENOME, "", TREE0, 1.0, "n1")
        store.register("other", "", {"a.py": "x = 1\n"}, None, "n9")
        tree = TREE0
        for i in range(1, 30):
            new = evolve(TREE0, i)
            if i % 3:
                store.record_cycle(GENOME, "n1", evaluated=[record(tree, new)], cycle=i)
            else:  # the other genome's events interleave with g's
                store.record_cycle("other", "n9", cycle=i)
        for genome in (None, GENOME, "other"):
            rows = list(store.log_rows(genome=genome))
            for count in (0, 1, 5, 63, 64, 65, len(rows) - 1, len(rows), len(rows) + 10):
                tail, earlier = store.log_tail(count, genome=genome)
                assert tail == (rows[-count:] if count else [])
                assert earlier == len(rows) - len(tail)
        with pytest.raises(Exception, match="nope"):
            store.log_tail(3, genome="nope")
