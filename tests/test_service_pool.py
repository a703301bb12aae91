"""Workers and routing under load: a killed worker, a green that never becomes ready,
weights, mirroring, promote and abort, a hostile worker (docs/service.md)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from concurrent.futures import Future
from pathlib import Path

import pytest
from servicekit import BASE, post, served, variant, version

from evolution.errors import ServiceError
from runtime.service.router import Router
from runtime.service.worker import Reply
from runtime.testing import processes_with, wait_until


def call(router: Router, function: str, **kwargs: object) -> Future[Reply]:
    future: Future[Reply] = Future()
    router.call("svc", function, kwargs, future.set_result)
    return future


class Load:
    """Callers on threads, calling ``add`` until stopped; every reply kept."""

    def __init__(self, router: Router, callers: int = 4) -> None:
        self.router = router
        self.replies: list[Reply] = []
        #: the replies to calls made after :attr:`switched` was set
        self.after: list[Reply] = []
        self.switched = threading.Event()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,)) for n in range(callers)]

    def _run(self, n: int) -> None:
        i = 0
        while not self._stop.is_set():
            after = self.switched.is_set()
            reply = call(self.router, "add", a=n, b=i).result(timeout=60)
            self.replies.append(reply)
            if after:
                self.after.append(reply)
            i += 1

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def wait_for(self, count: int) -> None:
        wait_until(lambda: len(self.replies) >= count, f"{count} replies")

    def failures(self) -> list[Reply]:
        return [r for r in self.replies if not r.ok]


@pytest.mark.parametrize("threaded", [False, True])
def test_a_worker_killed_under_load_is_restarted_and_no_call_is_lost(
    tmp_path: Path, threaded: bool
) -> None:
    with served(tmp_path, version("blue"), threaded=threaded) as (router, _):
        pool = router._get("svc").blue
        # replies are read on the front's loop, or by a thread per worker without a loop
        assert all((w._thread is not None) == threaded for w in pool.workers)
        futures = [call(router, "slow", seconds=0.02) for _ in range(200)]
        victim = pool.workers[0]
        wait_until(lambda: victim.busy > 0, "the victim holds calls")
        held = victim.busy
        assert victim.jailed.cgroup is not None
        for pid in victim.jailed.cgroup.pids():  # the worker, its init, bwrap's watchdog
            with contextlib.suppress(ProcessLookupError):  # gone already (the copy-in's cp)
                os.kill(pid, signal.SIGKILL)
        replies = [f.result(timeout=60) for f in futures]
        assert held > 0 and all(r.ok for r in replies), [r for r in replies if not r.ok][:3]
        wait_until(lambda: pool.restarts >= 1, "the victim restarted", timeout=60)
        wait_until(  # a jailed restart on a loaded 2-core machine: generous, never a speed
            lambda: len(pool.workers) == 2 and all(w.ready for w in pool.workers),
            "both workers ready again",
            timeout=90,
        )
        assert victim not in pool.workers
        assert call(router, "add", a=1, b=1).result(timeout=30).result == 2


@pytest.mark.parametrize("kind", ["hang", "broken"])
def test_a_green_that_never_becomes_ready_is_abandoned(tmp_path: Path, kind: str) -> None:
    if kind == "hang":
        tree = variant("hang")
    else:  # its readiness example raises
        tree = dict(BASE)
        tree["svc/calc.py"] = tree["svc/calc.py"].replace(
            "return a + b", "raise RuntimeError('no')"
        )
    green = version("green")
    with served(tmp_path, version("blue")) as (router, _), Load(router) as load:
        load.wait_for(20)
        with pytest.raises(ServiceError, match="not ready within 2 s"):
            router.start_green("svc", green, tree, ready_timeout=2)
        assert set(router.serving("svc")) == {"blue"}
        count = len(load.replies)
        load.wait_for(count + 20)  # blue kept serving throughout, and still does
    assert load.replies and not load.failures()
    wait_until(lambda: not processes_with(green), "no process of the green left", timeout=10)


def test_weights_route_their_share(tmp_path: Path) -> None:
    with served(tmp_path, version("blue")) as (router, _):
        router.start_green("svc", version("green"), BASE, ready_timeout=30)
        router.set_weight("svc", 0.3)
        replies = [
            f.result(timeout=30) for f in [call(router, "add", a=i, b=1) for i in range(600)]
        ]
        green = sum(r.colour == "green" for r in replies) / len(replies)
        assert 0.2 < green < 0.4, green
        window = router.window("svc")
        assert window.blue.requests + window.green.requests == 600
        assert window.green.requests == sum(r.colour == "green" for r in replies)
        assert window.blue.p50 > 0 and window.blue.p99 >= window.blue.p50
        router.set_weight("svc", 0.0)
        assert all(
            f.result(timeout=30).colour == "blue"
            for f in [call(router, "add", a=1, b=1) for _ in range(50)]
        )


def test_mirroring_catches_the_version_that_answers_differently(tmp_path: Path) -> None:
    with served(tmp_path, version("blue")) as (router, _):
        router.start_green("svc", version("green"), variant("differs"), ready_timeout=30)
        router.set_mirror("svc", 1.0)
        replies = [f.result(timeout=30) for f in [call(router, "add", a=i, b=5) for i in range(20)]]
        assert all(r.colour == "blue" for r in replies)  # weight 0: only mirrored to green
        wait_until(lambda: router._get("svc").windows.mirrored >= 20, "20 comparisons")
        window = router.window("svc")
        assert window.mirrored == 20 and window.mismatches == 1
        function, args, why = window.examples[0]
        assert function == "add" and '"a": 13' in args and "18" in why and "19" in why
        # weight 0: green served no caller; its 20 mirrored copies count in its figures
        assert window.blue.requests == 20 and window.green.requests == 20
        # the same version mirrored against itself: no mismatch
        router.start_green("svc", version("same"), BASE, ready_timeout=30)
        router.set_mirror("svc", 1.0)
        [f.result(timeout=30) for f in [call(router, "add", a=i, b=5) for i in range(20)]]
        wait_until(lambda: router._get("svc").windows.mirrored >= 20, "20 comparisons")
        assert router.window("svc").mismatches == 0


@pytest.mark.parametrize("switch", ["promote", "abort"])
def test_promote_and_abort_under_load_lose_no_request(tmp_path: Path, switch: str) -> None:
    blue, green = version("blue"), version("green")
    with served(tmp_path, blue) as (router, _), Load(router, callers=6) as load:
        router.start_green("svc", green, variant("differs"), ready_timeout=30)
        router.set_weight("svc", 0.5)
        weighted = len(load.replies)
        load.wait_for(weighted + 200)
        getattr(router, switch)("svc")
        load.switched.set()
        count = len(load.replies)
        load.wait_for(count + 200)
        serving = router.serving("svc")
    assert not load.failures(), load.failures()[:3]
    expected = green if switch == "promote" else blue
    assert serving == {"blue": expected}
    assert {r.version for r in load.replies[weighted + 10 : weighted + 200]} == {blue, green}
    # calls in flight at the switch finished where they started; every later one went to
    # the colour left serving
    assert len(load.after) >= 150 and {r.version for r in load.after} == {expected}
    assert {r.colour for r in load.after} == {"blue"}
    gone = blue if switch == "promote" else green
    wait_until(lambda: not processes_with(gone), f"the retired {gone} stopped", timeout=10)


@pytest.mark.parametrize(
    ("junk", "threaded"), [("garbage", False), ("huge", False), ("garbage", True)]
)
def test_a_hostile_worker_is_killed_and_the_node_serves_on(
    tmp_path: Path, junk: str, threaded: bool
) -> None:
    with served(tmp_path, version("blue"), variant("hostile"), threaded=threaded) as (
        router,
        front,
    ):
        pool = router._get("svc").blue
        status, body, _ = post(front, "/v1/svc/words", {"text": junk})
        assert status == 500 and body["kind"] == "crash", body  # tried twice, both killed
        assert "bad frame" in body["error"]
        wait_until(lambda: pool.restarts >= 2, "both workers that ran it restarted", timeout=90)
        wait_until(lambda: sum(w.ready for w in pool.workers) == 2, "both workers back", timeout=90)
        status, body, _ = post(front, "/v1/svc/add", {"a": 20, "b": 22})
        assert status == 200 and body["result"] == 42


def test_reload_switches_every_worker(tmp_path: Path) -> None:
    with served(tmp_path, version("blue")) as (router, _):
        assert call(router, "add", a=13, b=5).result(timeout=30).result == 18
        new = version("reloaded")
        router.reload("svc", new, variant("differs"))
        assert router.serving("svc") == {"blue": new}
        replies = [call(router, "add", a=13, b=5).result(timeout=30) for _ in range(6)]
        assert {r.result for r in replies} == {19} and {r.version for r in replies} == {new}


def test_a_call_past_its_timeout_ends_and_its_stuck_worker_is_replaced(tmp_path: Path) -> None:
    with served(tmp_path, version("blue"), call_timeout=1.0) as (router, front):
        pool = router._get("svc").blue
        others = [call(router, "add", a=i, b=1) for i in range(20)]
        status, body, _ = post(front, "/v1/svc/slow", {"seconds": 30})
        assert status == 504 and body["kind"] == "timeout" and "within 1 s" in body["error"]
        assert all(f.result(timeout=30).ok for f in others)
        wait_until(lambda: pool.restarts >= 1, "the stuck worker killed", timeout=90)
        wait_until(lambda: sum(w.ready for w in pool.workers) == 2, "both workers back", timeout=90)
        status, body, _ = post(front, "/v1/svc/add", {"a": 1, "b": 1})
        assert status == 200 and body["result"] == 2


def test_a_version_or_tree_that_would_leave_the_folder_is_refused(tmp_path: Path) -> None:
    with served(tmp_path, version("blue")) as (router, _):
        before = sorted(p.name for p in (tmp_path / "sandbox").iterdir())
        with pytest.raises(ServiceError, match="not a version id"):
            router.start_green("svc", "../../escape", BASE, ready_timeout=5)
        with pytest.raises(ServiceError, match="not a version id"):
            router.reload("svc", "a/b", BASE)
        from evolution.errors import SandboxError

        with pytest.raises(SandboxError, match="refusing to write"):
            router.start_green("svc", version("g"), {**BASE, "../x.py": ""}, ready_timeout=5)
        assert sorted(p.name for p in (tmp_path / "sandbox").iterdir()) == before  # nothing left
        assert call(router, "add", a=1, b=2).result(timeout=30).result == 3


def test_a_genome_that_prints_and_reads_stdin_does_not_disturb_the_frames(tmp_path: Path) -> None:
    with served(tmp_path, version("blue"), variant("chatty")) as (router, _):
        replies = [f.result(timeout=30) for f in [call(router, "add", a=i, b=1) for i in range(50)]]
        assert [r.result for r in replies] == [i + 1 for i in range(50)]
        worker = router._get("svc").blue.workers[0]
        assert "to stderr" in worker.jailed.last_words() or b"added" in worker.jailed.tail


def test_an_overloaded_pool_answers_unavailable_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runtime.service import workers

    monkeypatch.setattr(workers, "MAX_HELD", 2)  # 2 per worker: 4 calls held at most
    with served(tmp_path, version("blue")) as (router, front):
        held = [call(router, "slow", seconds=0.5) for _ in range(4)]
        status, body, _ = post(front, "/v1/svc/add", {"a": 1, "b": 2})
        assert status == 503 and "overloaded (4 calls" in body["error"], body
        assert all(f.result(timeout=30).ok for f in held)
        status, body, _ = post(front, "/v1/svc/add", {"a": 1, "b": 2})
        assert status == 200 and body["result"] == 3
