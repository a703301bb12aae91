"""VersionSlots: hot reload as Erlang/OTP does it, on real trees imported from real folders.

The genome is ``tests/data/counter`` (v1, v2, v3: v2 and v3 change the state's layout
through ``code_change``), copied into ``tmp_path``; calls run on real threads.
"""

from __future__ import annotations

import gc
import shutil
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from evolution.errors import ServiceError
from runtime.service.slots import VersionSlots

DATA = Path(__file__).parent / "data" / "counter"


@pytest.fixture
def trees(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name in ("v1", "v2", "v3"):
        out[name] = tmp_path / name
        shutil.copytree(DATA / name, out[name])
    return out


@pytest.fixture
def slots() -> Iterator[VersionSlots]:
    slots = VersionSlots(purge_timeout=5.0, suspend_timeout=5.0)
    try:
        yield slots
    finally:
        slots.close()


def variant(base: Path, name: str, path: str, edit: Callable[[str], str]) -> Path:
    """A copy of the tree at ``base`` with one file rewritten by ``edit``."""
    root = base.parent / name
    shutil.copytree(base, root)
    (root / path).write_text(edit((root / path).read_text()))
    return root


def which(slots: VersionSlots) -> str:
    return str(slots.call("counter.api", "which", {}))


@contextmanager
def in_flight(slots: VersionSlots) -> Iterator[tuple[threading.Event, list[object]]]:
    """A call blocked inside the genome (``api.hold``) until the test sets the gate."""
    gate, started = threading.Event(), threading.Event()
    out: list[object] = []

    def run() -> None:
        try:
            out.append(slots.call("counter.api", "hold", {"gate": gate, "started": started}))
        except BaseException as exc:  # handed to the test
            out.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert started.wait(10)
        yield gate, out
    finally:
        gate.set()
        thread.join(10)
        assert not thread.is_alive()


def test_each_version_binds_its_own_from_imports(
    slots: VersionSlots, trees: dict[str, Path]
) -> None:
    slots.load("v1", trees["v1"])
    with in_flight(slots) as (gate, out):
        slots.load("v2", trees["v2"])
        # v2's api did `from counter.version import tag` and `from . import store`: v2's own
        assert which(slots) == "v2"
        assert slots.call("counter.api", "layout", {}) == "counters"
        gate.set()
    # the v1 call looked `tag` up in v1's globals after v2 was loaded: v1's function
    assert out == ["v1"]
    # code looking modules up by name (dataclasses, typing) finds the version that serves
    assert sys.modules["counter.version"] is slots.call("counter.api", "version_module", {})
    assert slots.call("counter.release", "release", {}) == {"tag": "v2", "fields": ["notes", "tag"]}
    slots.close()
    assert not [name for name in sys.modules if name.split(".")[0] == "counter"]


def test_calls_in_flight_finish_on_old_code_new_calls_run_new(
    slots: VersionSlots, trees: dict[str, Path]
) -> None:
    slots.load("v1", trees["v1"])
    with in_flight(slots) as (gate, out):
        slots.load("v2", trees["v2"])
        status = slots.status()
        assert (status.current, status.old, status.old_in_flight) == ("v2", "v1", 1)
        with in_flight(slots) as (gate2, out2):
            assert slots.status().in_flight == 1  # the new call is on v2
            gate2.set()
        assert out2 == ["v2"]
        assert out == []  # the v1 call is still running
        gate.set()
    assert out == ["v1"]
    assert slots.status()[:3] == ("v2", None, 0)


def test_a_third_load_is_refused_while_the_old_version_is_busy(
    slots: VersionSlots, trees: dict[str, Path]
) -> None:
    slots.purge_timeout = 0.2
    slots.load("v1", trees["v1"])
    with in_flight(slots) as (gate, out):
        slots.load("v2", trees["v2"])
        with pytest.raises(
            ServiceError, match=r"old version v1 still has 1 call\(s\) in flight"
        ) as caught:
            slots.load("v3", trees["v3"])
        assert "never killed" in str(caught.value)
        assert slots.status()[:2] == ("v2", "v1")  # never a third
        assert which(slots) == "v2"
        gate.set()
    assert out == ["v1"]  # refused, not killed
    slots.load("v3", trees["v3"])
    assert which(slots) == "v3"


def test_a_third_load_waits_for_the_old_version_to_drain(
    slots: VersionSlots, trees: dict[str, Path]
) -> None:
    slots.load("v1", trees["v1"])
    errors: list[BaseException] = []

    def load_v3() -> None:
        try:
            slots.load("v3", trees["v3"])
        except BaseException as exc:
            errors.append(exc)

    with in_flight(slots) as (gate, out):
        slots.load("v2", trees["v2"])
        loader = threading.Thread(target=load_v3)
        loader.start()
        try:
            loader.join(0.3)
            assert loader.is_alive()  # waiting: the old version is busy
            assert slots.status()[:2] == ("v2", "v1")
            gate.set()
        finally:
            gate.set()
            loader.join(10)
    assert not errors
    assert out == ["v1"]
    assert slots.status()[:3] == ("v3", "v2", 0) or slots.status()[:2] == ("v3", None)
    assert which(slots) == "v3"


def test_the_old_version_is_purged_once_its_last_call_returns(
    slots: VersionSlots, trees: dict[str, Path]
) -> None:
    slots.load("v1", trees["v1"])
    v1_module = weakref.ref(slots.call("counter.api", "version_module", {}))
    with in_flight(slots) as (gate, _):
        slots.load("v2", trees["v2"])
        v2_module = slots.call("counter.api", "version_module", {})
        assert v2_module is not v1_module() and v2_module.TAG == "v2"
        gc.collect()
        assert v1_module() is not None  # still loaded: a call runs on it
        gate.set()
    assert slots.status().old is None
    gc.collect()
    assert v1_module() is None  # purged: nothing holds v1's modules any more


def test_code_change_migrates_the_state(slots: VersionSlots, trees: dict[str, Path]) -> None:
    slots.load("v1", trees["v1"])
    for key in ("a", "a", "a", "b"):
        slots.call("counter.store", "bump", {"key": key})
    assert slots.state == {"counts": {"a": 3, "b": 1}}
    slots.load("v2", trees["v2"])
    assert slots.state == {
        "layout": 2,
        "counters": {"a": {"n": 3, "bumps": 0}, "b": {"n": 1, "bumps": 0}},
    }
    assert slots.call("counter.store", "bump", {"key": "a", "by": 2}) == 5
    assert slots.call("counter.store", "bumps", {"key": "a"}) == 1
    slots.load("v3", trees["v3"])
    assert slots.call("counter.store", "total", {}) == 6
    assert slots.call("counter.store", "read", {"key": "a"}) == 5


def test_a_raising_code_change_keeps_the_old_version_and_its_state(
    slots: VersionSlots, trees: dict[str, Path]
) -> None:
    bad = variant(
        trees["v2"],
        "v2-bad",
        "counter/store.py",
        lambda text: text.replace(
            '    if "counts"', "    raise KeyError('layout')\n    if \"counts\"", 1
        ),
    )
    slots.load("v1", trees["v1"])
    slots.call("counter.store", "bump", {"key": "a"})
    before = slots.state
    with pytest.raises(ServiceError, match="code_change hook raised KeyError") as caught:
        slots.load("v2-bad", bad)
    assert "v1 keeps serving with its state unchanged" in str(caught.value)
    assert slots.state is before
    assert which(slots) == "v1"
    assert slots.status()[:2] == ("v1", None)
    assert slots.call("counter.store", "bump", {"key": "a"}) == 2  # v1's layout, v1's code
    slots.load("v2", trees["v2"])
    assert slots.call("counter.store", "bump", {"key": "a"}) == 3


BROKEN = {
    "syntax error": ("counter/api.py", lambda text: text + "\ndef broken(:\n"),
    "raises at import": ("counter/store.py", lambda text: text + "\nraise RuntimeError('boom')\n"),
    "exits at import": ("counter/version.py", lambda text: text + "\nraise SystemExit(3)\n"),
    "missing function": (
        "genome.toml",
        lambda text: text + '\n[service.functions.gone]\ncall = "counter.store:gone"\n',
    ),
    "missing module": (
        "genome.toml",
        lambda text: text + '\n[service.functions.gone]\ncall = "counter.gone:f"\n',
    ),
    "bad target": (
        "genome.toml",
        lambda text: text.replace('"counter.store:initial"', '"counter.store"'),
    ),
    "bad toml": ("genome.toml", lambda text: text + "\n[service\n"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_version_that_does_not_import_is_refused(
    slots: VersionSlots, trees: dict[str, Path], case: str
) -> None:
    path, edit = BROKEN[case]
    broken = variant(trees["v2"], "v2-broken", path, edit)
    slots.load("v1", trees["v1"])
    slots.call("counter.store", "bump", {"key": "a"})
    before = slots.state
    with pytest.raises(ServiceError) as caught:
        slots.load("v2-broken", broken)
    assert caught.value.hint
    assert which(slots) == "v1"
    assert slots.state is before
    assert slots.status()[:2] == ("v1", None)
    slots.load("v2", trees["v2"])  # the slot the refused version took is free again
    assert which(slots) == "v2"


def test_stateful_calls_wait_for_code_change_stateless_calls_do_not(
    slots: VersionSlots, trees: dict[str, Path]
) -> None:
    slow = variant(
        trees["v2"],
        "v2-slow",
        "counter/store.py",
        lambda text: text.replace(
            '    if "counts" in state:  # v1\n',
            "    import pathlib, time\n"
            "    here = pathlib.Path(__file__).parent\n"
            "    (here / 'migrating').touch()\n"
            "    while not (here / 'gate').exists():\n"
            "        time.sleep(0.001)\n"
            '    if "counts" in state:  # v1\n',
            1,
        ),
    )
    slots.load("v1", trees["v1"])
    slots.call("counter.store", "bump", {"key": "a"})
    results: list[object] = []
    loader = threading.Thread(target=slots.load, args=("v2-slow", slow))
    bumper = threading.Thread(
        target=lambda: results.append(slots.call("counter.store", "bump", {"key": "a"}))
    )
    loader.start()
    try:
        for _ in range(10_000):
            if (slow / "counter" / "migrating").exists():
                break
            loader.join(0.001)
        assert which(slots) == "v1"  # stateless: served at once, on the version still current
        bumper.start()
        bumper.join(0.3)
        assert bumper.is_alive() and results == []  # stateful: suspended while code_change runs
    finally:
        (slow / "counter" / "gate").touch()
        loader.join(10)
        if bumper.is_alive() or bumper.ident is not None:
            bumper.join(10)
    assert results == [2]  # ran after the swap, on v2's code with the migrated state
    assert slots.state["counters"]["a"] == {"n": 2, "bumps": 1}
    assert slots.status().longest_pause > 0


def test_many_threads_under_reload_lose_no_call(
    slots: VersionSlots, trees: dict[str, Path]
) -> None:
    slots.load("v1", trees["v1"])
    stop = threading.Event()
    bumped: list[list[int]] = [[] for _ in range(6)]
    seen: list[list[str]] = [[] for _ in range(6)]
    errors: list[BaseException] = []

    def caller(i: int) -> None:
        try:
            while not stop.is_set():
                bumped[i].append(slots.call("counter.store", "bump", {"key": "k"}))
                seen[i].append(which(slots))
        except BaseException as exc:
            errors.append(exc)

    def calls() -> int:
        return sum(len(b) for b in bumped)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    try:
        for version, root in [("v2", "v2"), ("v3", "v3"), ("v2b", "v2"), ("v3b", "v3")]:
            mark = calls()
            while calls() < mark + 200 and not errors:
                stop.wait(0.001)
            slots.load(version, trees[root])
        mark = calls()
        while calls() < mark + 200 and not errors:
            stop.wait(0.001)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert not errors
    total = calls()
    # every bump returned, each on the latest count: none lost, none run twice, the state
    # carried through four code_changes
    assert sorted(n for b in bumped for n in b) == list(range(1, total + 1))
    assert slots.call("counter.store", "total", {}) == total
    assert {tag for s in seen for tag in s} == {"v1", "v2", "v3"}
    assert slots.status().loads == 5


def test_a_caller_cannot_hand_a_stateful_function_its_state(
    slots: VersionSlots, trees: dict[str, Path]
) -> None:
    slots.load("v1", trees["v1"])
    with pytest.raises(ServiceError, match="'state' is not an argument"):
        slots.call("counter.store", "bump", {"key": "a", "state": {"counts": {"a": 10**9}}})
    assert slots.state == {"counts": {}}


@pytest.mark.parametrize(
    ("module", "function"),
    [
        ("os", "getcwd"),
        ("builtins", "eval"),
        ("counter.store", "__dict__"),
        ("counter.store", "_private"),
        ("counter.store", "LAYOUT"),
        ("counter.store", "nothere"),
        ("counter.nothere", "f"),
        ("counter..store", "bump"),
        ("counter.store", "bump:x"),
    ],
)
def test_calls_reach_only_public_functions_of_the_tree(
    slots: VersionSlots, trees: dict[str, Path], module: str, function: str
) -> None:
    slots.load("v1", trees["v1"])
    with pytest.raises(ServiceError):
        slots.call(module, function, {})


def test_no_call_before_a_load_and_a_second_load_of_the_same_version_does_nothing(
    slots: VersionSlots, trees: dict[str, Path]
) -> None:
    with pytest.raises(ServiceError, match="no version is loaded"):
        which(slots)
    slots.load("v1", trees["v1"])
    slots.call("counter.store", "bump", {"key": "a"})
    slots.load("v1", trees["v1"])
    assert slots.status().loads == 1
    assert slots.state == {"counts": {"a": 1}}


@contextmanager
def stateful_in_flight(slots: VersionSlots) -> Iterator[tuple[threading.Event, list[object]]]:
    """A stateful call blocked inside v1's ``store.hold`` (holding the state)."""
    gate, started = threading.Event(), threading.Event()
    out: list[object] = []
    thread = threading.Thread(
        target=lambda: out.append(
            slots.call("counter.store", "hold", {"gate": gate, "started": started})
        )
    )
    thread.start()
    try:
        assert started.wait(10)
        yield gate, out
    finally:
        gate.set()
        thread.join(10)


def test_stateful_calls_run_one_at_a_time(slots: VersionSlots, trees: dict[str, Path]) -> None:
    slots.load("v1", trees["v1"])
    results: list[object] = []
    bumper = threading.Thread(
        target=lambda: results.append(slots.call("counter.store", "bump", {"key": "a"}))
    )
    with stateful_in_flight(slots) as (gate, out):
        bumper.start()
        bumper.join(0.3)
        assert bumper.is_alive() and results == []  # waits for the state
        assert which(slots) == "v1"  # stateless calls do not
        gate.set()
    bumper.join(10)
    assert out == ["counts"] and results == [1]


def test_a_load_waits_for_the_running_stateful_call_and_later_ones_run_new_code(
    slots: VersionSlots, trees: dict[str, Path]
) -> None:
    slots.load("v1", trees["v1"])
    results: list[object] = []
    bumper = threading.Thread(
        target=lambda: results.append(slots.call("counter.store", "bump", {"key": "a"}))
    )
    loader = threading.Thread(target=slots.load, args=("v2", trees["v2"]))
    with stateful_in_flight(slots) as (gate, out):
        loader.start()
        for _ in range(10_000):
            if slots.status().suspended:
                break
            loader.join(0.001)
        assert slots.status().suspended and slots.status().current == "v1"
        bumper.start()  # arrives while the load waits: suspended, then runs on v2
        bumper.join(0.1)
        assert bumper.is_alive()
        gate.set()
    loader.join(10)
    bumper.join(10)
    assert out == ["counts"]  # the held call finished on v1, with v1's state
    assert results == [1]
    assert slots.state == {"layout": 2, "counters": {"a": {"n": 1, "bumps": 1}}}  # v2 counted it


def test_a_load_gives_up_on_a_stateful_call_that_does_not_return(
    slots: VersionSlots, trees: dict[str, Path]
) -> None:
    slots.suspend_timeout = 0.2
    slots.load("v1", trees["v1"])
    with stateful_in_flight(slots) as (gate, out):
        with pytest.raises(ServiceError, match="a stateful call ran over"):
            slots.load("v2", trees["v2"])
        assert not slots.status().suspended
        assert slots.status()[:2] == ("v1", None)
        gate.set()
    assert out == ["counts"]
    slots.load("v2", trees["v2"])
    assert which(slots) == "v2"


CHILD = r"""
import json, sys, threading
sys.path.insert(0, sys.argv[1])  # the copied runtime/service/, as in a worker's jail
from pathlib import Path
from runtime.service.slots import ServiceError, VersionSlots

slots, events, pending = VersionSlots(purge_timeout=0.3), {}, {}

def event(name):
    return events.setdefault(name, threading.Event())

def arguments(kwargs):
    return {k: event(v["event"]) if isinstance(v, dict) and "event" in v else v for k, v in kwargs.items()}

def run(request):
    op = request["op"]
    if op == "load":
        slots.load(request["version"], Path(request["root"]))
        return None
    if op == "call":
        return slots.call(request["module"], request["function"], arguments(request["kwargs"]))
    if op == "start":  # a call on a thread of its own, collected by "result"
        box = []
        args = (request["module"], request["function"], arguments(request["kwargs"]))
        thread = threading.Thread(target=lambda: box.append(slots.call(*args)))
        thread.start()
        pending[request["id"]] = (thread, box)
        return None
    if op == "result":
        thread, box = pending.pop(request["id"])
        thread.join(10)
        return box[0]
    if op == "wait":
        return event(request["event"]).wait(10)
    if op == "set":
        event(request["event"]).set()
        return None
    if op == "status":
        return slots.status()._asdict()
    if op == "probe":  # what the child could import: no TARS package but the copied files
        names = sorted({name.split(".")[0] for name in sys.modules})
        return {"names": names, "error": ServiceError.__module__, "version": slots.version}
    raise ValueError(op)

for line in sys.stdin:
    request = json.loads(line)
    try:
        reply = {"ok": run(request)}
    except Exception as exc:
        reply = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(reply), flush=True)
slots.close()
"""


def test_slots_run_in_a_child_process_driven_over_a_pipe(
    tmp_path: Path, trees: dict[str, Path]
) -> None:
    """Nothing depends on the parent or the project: a ``python -I -S -c`` child, given only
    copies of ``slots.py`` and ``isolated.py`` (what a worker's jail holds), loads and calls
    over its pipes."""
    import json
    import subprocess

    worker = tmp_path / "_worker"
    (worker / "runtime" / "service").mkdir(parents=True)
    for init in ("runtime/__init__.py", "runtime/service/__init__.py"):
        (worker / init).write_text("")
    here = Path(__file__).resolve().parents[1] / "runtime" / "service"
    for name in ("slots.py", "isolated.py"):
        shutil.copy(here / name, worker / "runtime" / "service" / name)
    child = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", CHILD, str(worker)],
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None

    def ask(**request: object) -> object:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(json.dumps(request) + "\n")
        child.stdin.flush()
        reply = json.loads(child.stdout.readline())
        if "error" in reply:
            return reply["error"]
        return reply["ok"]

    try:
        assert ask(op="load", version="v1", root=str(trees["v1"])) is None
        probe = ask(op="probe")
        assert isinstance(probe, dict) and probe["version"] == "v1"
        assert not {"evolution", "events", "consensus", "actors"} & set(probe["names"])
        assert probe["error"] == "runtime.service.isolated"  # the jail's stand-in error
        for _ in range(2):
            ask(op="call", module="counter.store", function="bump", kwargs={"key": "a"})
        hold = {"gate": {"event": "gate"}, "started": {"event": "started"}}
        ask(op="start", id="h", module="counter.api", function="hold", kwargs=hold)
        assert ask(op="wait", event="started") is True
        assert ask(op="load", version="v2", root=str(trees["v2"])) is None
        assert ask(op="call", module="counter.api", function="which", kwargs={}) == "v2"
        status = ask(op="status")
        assert isinstance(status, dict) and (status["current"], status["old"]) == ("v2", "v1")
        refused = ask(op="load", version="v3", root=str(trees["v3"]))
        assert isinstance(refused, str) and refused.startswith("ServiceError")
        ask(op="set", event="gate")
        assert ask(op="result", id="h") == "v1"
        assert ask(op="call", module="counter.store", function="bump", kwargs={"key": "a"}) == 3
        assert ask(op="load", version="v3", root=str(trees["v3"])) is None
        assert ask(op="call", module="counter.store", function="total", kwargs={}) == 3
        child.stdin.close()
        assert child.wait(10) == 0
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(10)
        child.stdout.close()


def test_a_library_function_imported_into_a_genome_module_cannot_be_called(
    slots: VersionSlots, trees: dict[str, Path]
) -> None:
    leaky = variant(
        trees["v1"],
        "v1-leaky",
        "counter/api.py",
        lambda text: "from os import getcwd  # noqa\n" + text,
    )
    slots.load("v1-leaky", leaky)
    with pytest.raises(ServiceError, match="not in the genome's tree"):
        slots.call("counter.api", "getcwd", {})
    assert slots.call("counter.release", "Release", {"tag": "x"}).tag == "x"  # defined in the tree
