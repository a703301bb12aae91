"""Switches and restarts that do not depend on the thread that asked for them.

bwrap's ``--die-with-parent`` follows the *thread* that forked it: a worker started from
a thread that then ended was SIGKILLed with it (a switch driven from a short-lived
thread lost calls; a restarted worker died ~10 ms after its restart and the pool backed
off to 3 s). Workers are now started on one thread that lives as long as the process
(``runtime.sandbox_spawn.spawn_lasting``); these tests end the asking thread on purpose.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
from servicekit import BASE, served, version
from test_service_pool import Load, call

from runtime.sandbox_spawn import Spawned, spawn_direct, spawn_lasting
from runtime.testing import wait_until


def _on_a_thread_that_ends(job: object) -> None:
    assert callable(job)
    thread = threading.Thread(target=job)
    thread.start()
    thread.join(120)
    assert not thread.is_alive()


def test_a_switch_asked_from_a_thread_that_ends_loses_nothing(tmp_path: Path) -> None:
    green = version("green")
    with served(tmp_path, version("blue")) as (router, _), Load(router, callers=4) as load:
        load.wait_for(50)

        def switch() -> None:
            router.start_green("svc", green, BASE, ready_timeout=60)
            for weight in (0.01, 0.1, 0.5, 1.0):
                router.set_weight("svc", weight)
            router.promote("svc")

        _on_a_thread_that_ends(switch)
        load.switched.set()  # every call made from now on is made after the promotion
        pool = router._get("svc").blue
        assert pool.version == green
        count = len(load.replies)
        load.wait_for(count + 300)  # the asking thread is gone: its workers serve on
        time.sleep(0.3)
        load.wait_for(len(load.replies) + 50)
    assert not load.failures(), load.failures()[:3]
    assert pool.restarts == 0, pool.last_failure
    # a call in flight at the promotion may still answer from blue, in any order among
    # the replies after it (the slice [count + 4:] assumed they came first: it failed so)
    late_blue = [r for r in load.replies[count:] if r.version != green]
    assert len(late_blue) <= 4, late_blue[:5]
    assert len(load.after) >= 300 and {r.version for r in load.after} == {green}


@pytest.mark.parametrize("threaded", [False, True])
def test_a_restarted_worker_stays_up(tmp_path: Path, threaded: bool) -> None:
    with served(tmp_path, version("blue"), threaded=threaded) as (router, _):
        pool = router._get("svc").blue
        victim = pool.workers[0]
        assert victim.jailed.cgroup is not None
        for pid in victim.jailed.cgroup.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_until(lambda: pool.restarts >= 1, "the victim restarted", timeout=60)
        wait_until(  # a jailed restart on a loaded 2-core machine: generous, never a speed
            lambda: len(pool.workers) == 2 and all(w.ready and w.alive for w in pool.workers),
            "both workers ready again",
            timeout=90,
        )
        # the restart's thread has ended by now; its worker must not have gone with it
        time.sleep(0.5)
        assert pool.restarts == 1, pool.last_failure
        assert all(w.alive for w in pool.workers)
        assert call(router, "add", a=2, b=2).result(timeout=30).result == 4


def test_green_is_warmed_before_it_takes_weight(tmp_path: Path) -> None:
    """Each worker has run every function's example before the first live call reaches it:
    ``count`` answers how often its worker ran it, so a live caller never sees 1."""
    tree = dict(BASE)
    tree["svc/counted.py"] = (
        "_calls = 0\n\n\ndef count():\n    global _calls\n    _calls += 1\n    return _calls\n"
    )
    tree["genome.toml"] += (
        '\n[service.functions.count]\ncall = "svc.counted:count"\nargs = {}\nexample = {}\n'
    )
    with served(tmp_path, version("blue"), tree) as (router, _):
        router.start_green("svc", version("green"), tree, ready_timeout=60)
        router.set_weight("svc", 1.0)
        answers = [call(router, "count").result(timeout=30) for _ in range(8)]
    assert all(a.ok and a.colour == "green" for a in answers), answers
    assert min(a.result for a in answers) >= 2, [a.result for a in answers]


@pytest.mark.parametrize("how", ["direct", "lasting"])
def test_a_death_signal_follows_the_forking_thread_unless_it_lasts(
    tmp_path: Path, how: str
) -> None:
    """The kernel's rule the fix rests on: a child with PR_SET_PDEATHSIG (bwrap's
    ``--die-with-parent``; here ``setpriv --pdeathsig KILL``) dies when the *thread* that
    forked it ends; forked through ``spawn_lasting`` it lives on."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("no setpriv (util-linux) to set a death signal with")
    argv = [setpriv, "--pdeathsig", "KILL", "--", "sleep", "60"]
    spawn = spawn_direct if how == "direct" else spawn_lasting
    started: list[Spawned] = []

    def ask() -> None:
        started.append(
            spawn(argv, tmp_path, dict(os.environ), stdin=False, results=False, preexec=None)
        )
        time.sleep(0.3)  # setpriv has set the signal and exec'd sleep by now

    _on_a_thread_that_ends(ask)
    proc = started[0].proc
    try:
        if how == "direct":
            assert proc.wait(timeout=10) == -signal.SIGKILL
        else:
            time.sleep(0.3)
            assert proc.poll() is None, "the child died with the asking thread"
    finally:
        proc.kill()
        proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
