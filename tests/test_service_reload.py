"""Hot reload through the real service: jailed worker, HTTP front, calls in flight (issue 11).

The counter genome (tests/data/counter) is reloadable and stateful; its v2 changes the
state's layout through ``code_change``. Under load from several threads the router's
``reload`` switches the worker in place: no call may fail, every bump must be counted
once, new calls run v2, and the counts made under v1 survive the migration.
"""

from __future__ import annotations

import threading
from pathlib import Path

from runtime.genome_files import load_genome
from runtime.sandbox import Sandbox
from runtime.service.front import Front
from runtime.service.router import Router
from tests.servicekit import post, version

COUNTER = Path(__file__).parent / "data" / "counter"


def test_hot_reload_under_load_loses_no_call_and_migrates_the_state(tmp_path: Path) -> None:
    _, v1 = load_genome(COUNTER / "v1")
    _, v2 = load_genome(COUNTER / "v2")
    first, second = version("v1"), version("v2")
    sandbox = Sandbox(tmp_path / "sandbox")
    router = Router(sandbox)
    front = Front(router, "n1")
    statuses: list[int] = []
    lock = threading.Lock()
    half = threading.Barrier(5)  # four callers and the reloader meet halfway

    def caller() -> None:
        for i in range(60):
            if i == 30:
                half.wait(60)
            status, _, _ = post(front, "/v1/counter/bump", {"key": "k"})
            with lock:
                statuses.append(status)

    try:
        front.start()
        router.add("counter", first, v1, ready_timeout=30)
        assert post(front, "/v1/counter/which", {})[1]["result"] == "v1"
        callers = [threading.Thread(target=caller) for _ in range(4)]
        for thread in callers:
            thread.start()
        half.wait(60)
        router.reload("counter", second, v2)  # while the second half of the calls runs
        for thread in callers:
            thread.join(120)
        assert statuses == [200] * 240, sorted(set(statuses))
        status, answer, _ = post(front, "/v1/counter/which", {})
        assert (status, answer["result"], answer["version"]) == (200, "v2", second)
        # every bump counted once, across the migration from v1's layout to v2's
        assert post(front, "/v1/counter/read", {"key": "k"})[1]["result"] == 240
        # v2 counts bumps since the key entered its layout: only those made after the reload
        after = post(front, "/v1/counter/bumps", {"key": "k"})[1]["result"]
        assert 0 < after < 240
    finally:
        front.stop()
        router.stop()
        sandbox.close()
