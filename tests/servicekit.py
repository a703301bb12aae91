"""Helpers for the service tests: the test genome's versions, a router and front, HTTP calls.

The test genome (tests/data/svc) is stateless; :func:`variant` makes its other versions
(a differing answer, a hang at import, a hostile worker) as tree edits, and every
version id carries a random marker so a test can look for leftover worker processes by
it (``processes_with``).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runtime.genome_files import load_genome
from runtime.sandbox import Sandbox
from runtime.service.front import Front
from runtime.service.router import Router
from runtime.testing import processes_with, wait_until

SVC = Path(__file__).parent / "data" / "svc"
_, BASE = load_genome(SVC)


def version(label: str) -> str:
    """A version id with a marker no other test uses (found in the worker's command line)."""
    return f"{label}-{uuid.uuid4().hex[:12]}"


def variant(kind: str) -> dict[str, str]:
    """The test genome with one change: ``differs`` (add(13, b) is off by one), ``hang``
    (importing svc.calc never ends), ``hostile`` (``words`` writes garbage on the frame pipe
    when its text is "garbage", a frame header of 4 GiB when "huge")."""
    tree = dict(BASE)
    calc = tree["svc/calc.py"]
    if kind == "differs":
        calc = calc.replace("    return a + b\n", "    return a + b + (a == 13)\n")
    elif kind == "chatty":  # prints on stdout and stderr, and reads stdin
        calc = calc.replace(
            "    return a + b\n",
            "    import sys\n    print('added', a, b)\n    print('to stderr', file=sys.stderr)\n"
            "    sys.stdout.flush()\n    sys.stdin.read()\n    return a + b\n",
        )
    elif kind == "hang":
        calc = calc.replace("import time\n", "import time\n\ntime.sleep(3600)\n")
    elif kind == "hostile":
        calc = calc.replace(
            "def words(text, upper=False):\n",
            "def words(text, upper=False):\n"
            "    import os\n"
            "    junk = {'garbage': b'\\x00\\x00\\x00\\x05\\xc1\\xc1\\xc1\\xc1\\xc1',\n"
            "            'huge': b'\\xff\\xff\\xff\\xf0'}.get(text)\n"
            "    if junk:\n"
            "        for fd in range(3, 64):\n"
            "            try:\n"
            "                os.write(fd, junk)\n"
            "            except OSError:\n"
            "                pass\n",
        )
    else:
        raise ValueError(kind)
    assert calc != tree["svc/calc.py"]
    tree["svc/calc.py"] = calc
    return tree


@contextlib.contextmanager
def served(
    tmp_path: Path,
    blue: str,
    tree: dict[str, str] | None = None,
    *,
    threaded: bool = False,
    **router: Any,
) -> Iterator[tuple[Router, Front]]:
    """A router serving ``blue`` of the test genome behind a started front; all stopped after."""
    sandbox = Sandbox(tmp_path / "sandbox")
    routes = Router(sandbox, **router)
    front = Front(routes, "n1")
    try:
        if threaded:  # replies read by a thread per worker (a router without a front)
            routes.add("svc", blue, tree or BASE, ready_timeout=30)
            front.start()
        else:  # as a node does it: the front first, replies read on its event loop
            front.start()
            routes.add("svc", blue, tree or BASE, ready_timeout=30)
        yield routes, front
    finally:
        front.stop()
        routes.stop()
        sandbox.close()
    # nothing of the workers outlives the router (their version ids are in their argv)
    wait_until(lambda: not processes_with(blue), f"no process of {blue} left", timeout=10)


_local = threading.local()


def post(
    front: Front,
    path: str,
    body: Any,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, dict[str, str]]:
    """POST ``body`` as JSON (or ``raw`` bytes); (status, decoded JSON, headers). One
    keep-alive connection per thread and front."""
    return request(
        front, "POST", path, raw if raw is not None else json.dumps(body).encode(), headers
    )


def get(front: Front, path: str) -> tuple[int, Any, dict[str, str]]:
    return request(front, "GET", path, None, None)


def request(
    front: Front, method: str, path: str, data: bytes | None, headers: dict[str, str] | None
) -> tuple[int, Any, dict[str, str]]:
    key = (front.host, front.port)
    conns: dict[tuple[str, int], http.client.HTTPConnection] = getattr(_local, "conns", {})
    _local.conns = conns
    for attempt in range(2):
        conn = conns.get(key) or http.client.HTTPConnection(*key, timeout=60)
        conns[key] = conn
        try:
            conn.request(
                method,
                path,
                body=data,
                headers={"Content-Type": "application/json", **(headers or {})},
            )
            response = conn.getresponse()
            text = response.read()
            break
        except (ConnectionError, http.client.HTTPException):
            conn.close()
            conns.pop(key, None)
            if attempt:
                raise
    kind = response.getheader("Content-Type", "")
    decoded = json.loads(text) if "json" in kind else text.decode()
    return response.status, decoded, dict(response.getheaders())
