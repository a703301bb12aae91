"""The live service over HTTP: answers equal to in-process calls, every error of the contract,
and a worker that attacks its jail (docs/service.md)."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servicekit import SVC, get, post, served, version

from runtime.genome_files import load_genome
from runtime.service.front import Front
from runtime.service.router import Router

LOGSTATS = Path(__file__).parents[1] / "genomes" / "logstats"


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[tuple[Router, Front, str]]:
    blue = version("blue")
    with served(tmp_path, blue) as (router, front):
        yield router, front, blue


def in_process(folder: Path, call: str, kwargs: dict[str, Any]) -> Any:
    """The function called here, its answer as a caller sees it over JSON."""
    module, function = call.split(":")
    sys.path.insert(0, str(folder))
    try:
        answer = getattr(importlib.import_module(module), function)(**kwargs)
    finally:
        sys.path.remove(str(folder))
    return json.loads(json.dumps(answer))


def test_http_answers_equal_in_process_calls(svc: tuple[Router, Front, str]) -> None:
    router, front, blue = svc
    for function, kwargs in [
        ("add", {"a": 2, "b": 40}),
        ("words", {"text": "the quick fox"}),
        ("words", {"text": "a b", "upper": True}),
        ("words", {"text": "none", "upper": None}),
    ]:
        status, body, _ = post(front, f"/v1/svc/{function}", kwargs)
        call = router.describe("svc")  # the manifest's call for the function
        assert status == 200, body
        spec = load_genome(SVC)[0].service
        assert spec is not None and call["version"] == blue
        args = {k: v for k, v in kwargs.items() if v is not None}
        assert body == {
            "result": in_process(SVC, spec.functions[function].call, args),
            "version": blue,
            "colour": "blue",
        }


def test_logstats_served_equals_in_process(tmp_path: Path) -> None:
    """A shipped genome: its [service] entry points over HTTP, against the same code here."""
    manifest, tree = load_genome(LOGSTATS)
    assert manifest.service is not None
    sys.path.insert(0, str(LOGSTATS))
    try:
        from tests.fixtures import SAMPLE  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(LOGSTATS))
        for name in [n for n in sys.modules if n == "tests" or n.startswith("tests.")]:
            del sys.modules[name]
    sandbox_tree = dict(tree)
    from runtime.sandbox import Sandbox

    sandbox = Sandbox(tmp_path / "sandbox")
    router = Router(sandbox)
    front = Front(router, "n1")
    try:
        router.add("logstats", "v-logstats", sandbox_tree, ready_timeout=30)
        front.start()
        calls = {
            "summarise": {"lines": SAMPLE, "top": 3},
            "report": {"lines": SAMPLE},
            "search": {"lines": SAMPLE, "keywords": ["timeout", "refused"], "mode": "any"},
        }
        for function, kwargs in calls.items():
            status, body, _ = post(front, f"/v1/logstats/{function}", kwargs)
            assert status == 200, body
            expected = in_process(LOGSTATS, manifest.service.functions[function].call, kwargs)
            assert body["result"] == expected
            assert body["result"], function  # not an empty answer that equals by accident
    finally:
        front.stop()
        router.stop()
        sandbox.close()


@pytest.mark.parametrize(
    ("path", "raw", "status", "words"),
    [
        ("/v1/svc/add", b"{not json", 400, "not JSON"),
        ("/v1/svc/add", b"[1, 2]", 400, "must be a JSON object"),
        ("/v1/svc/add", b'{"a": 1}', 400, "missing argument 'b'"),
        ("/v1/svc/add", b'{"a": 1, "b": 2, "c": 3}', 400, "unknown argument 'c'"),
        (
            "/v1/svc/add",
            b'{"a": 1, "b": "2"}',
            400,
            "argument 'b' of function 'add': expected int, got a string",
        ),
        ("/v1/svc/add", b'{"a": true, "b": 2}', 400, "argument 'a'"),
        ("/v1/svc/words", b'{"text": ["a"]}', 400, "argument 'text'"),
        ("/v1/svc/nope", b"{}", 400, "svc has no function 'nope'"),
        ("/v1/other/add", b"{}", 404, "genome 'other' is not served here"),
        ("/v1/svc/fail", b'{"message": "boom"}', 500, "ValueError: boom"),
        ("/v1/svc", b"{}", 405, "Method Not Allowed"),
        ("/nowhere", b"{}", 404, "Not Found"),
    ],
)
def test_errors_are_json_with_what_and_hint(
    svc: tuple[Router, Front, str], path: str, raw: bytes, status: int, words: str
) -> None:
    _, front, blue = svc
    got, body, headers = post(front, path, None, raw=raw, headers={"X-Tars-Request": "r-17"})
    assert got == status, body
    assert words in body["error"]
    assert headers.get("X-Tars-Request") == "r-17"
    if status == 500:
        assert body["kind"] == "exception" and body["version"] == blue
    else:
        assert body["hint"]


def test_oversized_body_is_refused(tmp_path: Path) -> None:
    with served(tmp_path, version("blue")) as (router, _):
        small = Front(router, "n1", max_body=1000)
        small.start()
        try:
            status, body, _ = post(small, "/v1/svc/words", {"text": "x" * 5000})
            assert status == 413 and "1000 bytes" in body["hint"]
            status, body, _ = post(small, "/v1/svc/words", {"text": "fits"})
            assert status == 200 and body["result"]["words"] == ["fits"]
        finally:
            small.stop()


def test_health_and_description(svc: tuple[Router, Front, str]) -> None:
    _, front, blue = svc
    status, body, _ = get(front, "/v1/health")
    assert status == 200
    assert body == {"node": "n1", "genomes": {"svc": {"blue": blue, "green": None, "weight": 0.0}}}
    status, body, _ = get(front, "/v1/svc")
    assert status == 200 and body["genome"] == "svc" and body["version"] == blue
    assert body["functions"]["add"] == {
        "args": {"a": "int", "b": "int"},
        "example": {"a": 1, "b": 2},
    }
    status, body, _ = get(front, "/v1/nothing")
    assert status == 404 and "not served" in body["error"]
    status, text, headers = get(front, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")


def test_a_worker_cannot_read_outside_its_tree(tmp_path: Path) -> None:
    """The worker's code reads the node's state folder, /etc/shadow, the host's copy of its
    own tree, and /proc/1/environ: none of it exists in its jail."""
    state = tmp_path / "state"
    state.mkdir()
    secret = state / "node.key_secret"
    secret.write_text("secret-key = 'do-not-leak'\n")
    secret.chmod(0o644)  # readable by anyone on the host: only the jail keeps it out
    blue = version("blue")
    with served(tmp_path, blue) as (router, front):
        pool_folder = router._get("svc").blue.folder
        for path in (str(secret), "/etc/shadow", str(pool_folder / "v" / blue / "svc" / "calc.py"),
                     str(Path(__file__))):  # fmt: skip
            status, body, _ = post(front, "/v1/svc/peek", {"path": path})
            assert status == 500, (path, body)
            assert "FileNotFoundError" in body["error"] or "PermissionError" in body["error"]
        # what it may read: its own tree (read-only, in the jail's view) and /etc/passwd's stub
        status, body, _ = post(
            front, "/v1/svc/peek", {"path": "/.tars-src/v/" + blue + "/svc/calc.py"}
        )
        assert status == 200 and "def add" in body["result"]
        status, body, _ = post(front, "/v1/svc/peek", {"path": "/etc/passwd"})
        assert status == 200 and "nobody" in body["result"] and "/root" not in body["result"]


def test_the_manifest_limits_bind_a_worker(svc: tuple[Router, Front, str]) -> None:
    """memory_mb = 512 in the test genome: 600 MiB at once fails in the worker, the node serves on."""
    _, front, _ = svc
    status, body, _ = post(front, "/v1/svc/grow", {"mb": 600})
    assert status == 500 and "MemoryError" in body["error"], body
    status, body, _ = post(front, "/v1/svc/grow", {"mb": 16})
    assert status == 200 and body["result"] == 16 << 20


def test_without_the_full_jail_the_service_refuses_unless_weak_isolation_is_accepted(
    tmp_path: Path,
) -> None:
    """The sandbox's rule (docs/sandbox.md): isolation "none" is refused, or run when accepted."""
    from servicekit import BASE

    from evolution.errors import SandboxError
    from runtime.sandbox import Sandbox

    refused = Sandbox(tmp_path / "refused", "none")
    router = Router(refused)
    try:
        with pytest.raises(SandboxError, match="refusing to run candidate code"):
            router.add("svc", version("weak"), BASE, ready_timeout=30)
        assert router.genomes() == []
    finally:
        router.stop()
        refused.close()
    accepted = Sandbox(tmp_path / "accepted", "none", accept_weak_isolation=True)
    router = Router(accepted)
    front = Front(router, "n1")
    try:
        router.add("svc", version("weak"), BASE, ready_timeout=30)
        front.start()
        status, body, _ = post(front, "/v1/svc/peek", {"path": str(Path(__file__))})
        assert status == 200 and "attacks its jail" in body["result"]  # weak: the host is visible
    finally:
        front.stop()
        router.stop()
        accepted.close()


def test_textindex_served_equals_in_process(tmp_path: Path) -> None:
    folder = LOGSTATS.parent / "textindex"
    manifest, tree = load_genome(folder)
    assert manifest.service is not None
    from runtime.sandbox import Sandbox

    docs = ["The quick brown fox.", "Foxes are quick; dogs lazy.", "Search ranks documents.",
            "Café naïve résumé.", "Indexing documents quickly: postings per term."]  # fmt: skip
    sandbox = Sandbox(tmp_path / "sandbox")
    router = Router(sandbox)
    front = Front(router, "n1")
    try:
        front.start()
        router.add("textindex", "v-textindex", tree, ready_timeout=30)
        for function, kwargs in [
            ("search", {"documents": docs, "query": "quick OR documents", "k": 3}),
            ("highlight", {"documents": docs, "query": "documents", "width": 4}),
            *[(name, dict(spec.example)) for name, spec in manifest.service.functions.items()],
        ]:
            status, body, _ = post(front, f"/v1/textindex/{function}", kwargs)
            assert status == 200, body
            call = manifest.service.functions[function].call
            assert body["result"] == in_process(folder, call, kwargs) and body["result"]
    finally:
        front.stop()
        router.stop()
        sandbox.close()
