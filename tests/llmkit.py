"""A scripted OpenAI-compatible server on 127.0.0.1 for the LLM generator's tests.

A real ``http.server`` on a free port (port 0), answering ``POST /v1/chat/completions``
from a script: one :class:`Turn` per request, in order (a status, a body or a reply
text, headers, a delay before answering).  It records every request it received (path,
headers, JSON body), so a test can count them and read what the client sent.  The model
endpoint is what a user brings; this is a real one whose answers the test chooses.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Turn:
    """One scripted answer: ``reply`` becomes an OpenAI completion; ``raw`` is sent as is."""

    reply: str | None = None
    status: int = 200
    raw: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    tokens_in: int = 120
    tokens_out: int = 60
    content_type: str = "application/json"


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def prompt(self) -> str:
        return "\n".join(m["content"] for m in self.body.get("messages", []))

    @property
    def shown(self) -> str:
        """What TARS wrote (system and user messages), without the model's own replies."""
        messages = self.body.get("messages", [])
        return "\n".join(m["content"] for m in messages if m["role"] != "assistant")


def completion(text: str, tokens_in: int = 120, tokens_out: int = 60) -> dict[str, Any]:
    """An OpenAI chat completion body holding ``text``."""
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": "scripted",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {
            "prompt_tokens": tokens_in,
            "completion_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
        },
    }


class ScriptedServer:
    """The server, its script and what it received."""

    def __init__(self) -> None:
        self.turns: list[Turn] = []
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def script(self, *turns: Turn) -> None:
        with self._lock:
            self.turns.extend(turns)

    def next_turn(self, received: Received) -> Turn:
        with self._lock:
            self.received.append(received)
            if not self.turns:
                return Turn(status=400, raw='{"error": "script exhausted"}')
            return self.turns.pop(0)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _handler(server: ScriptedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            return None

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except json.JSONDecodeError:
                body = {}
            turn = server.next_turn(Received(self.path, dict(self.headers), body))
            if turn.delay:
                time.sleep(turn.delay)
            if turn.raw is not None:
                payload = turn.raw.encode()
            else:
                payload = json.dumps(
                    completion(turn.reply or "", turn.tokens_in, turn.tokens_out)
                ).encode()
            try:
                self.send_response(turn.status)
                self.send_header("Content-Type", turn.content_type)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in turn.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
            except OSError:
                pass  # the client gave up (a scripted timeout)

    return Handler


@contextmanager
def scripted_server() -> Iterator[ScriptedServer]:
    """A running server, closed at the end (a test module's fixture wraps it)."""
    server = ScriptedServer()
    try:
        yield server
    finally:
        server.close()


def search_replace(path: str, search: str, replace: str) -> str:
    """A reply holding one SEARCH/REPLACE block, with the prose models put around it."""
    return (
        f"Here is the change.\n\n{path}\n```python\n<<<<<<< SEARCH\n{search}=======\n"
        f"{replace}>>>>>>> REPLACE\n```\n"
    )


#: tests/data/tiny: COMMON becomes a frozenset once and count_common tests it (about 2×;
#: rewriting summary's scan too makes the bench so fast it reports 0.0 seconds, refused)
TINY_SEARCH = '''def count_common(words):
    """How many of ``words`` are common words."""
    total = 0
    for word in words:
        if word in COMMON:  # a list scan per word
            total += 1
    return total
'''
TINY_REPLACE = '''COMMON_SET = frozenset(COMMON)


def count_common(words):
    """How many of ``words`` are common words."""
    common = COMMON_SET
    total = 0
    for word in words:
        if word in common:
            total += 1
    return total
'''
GOOD_TINY_REPLY = search_replace("tiny/core.py", TINY_SEARCH, TINY_REPLACE)
