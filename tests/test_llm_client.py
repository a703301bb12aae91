"""The HTTP client against a real scripted server: retries, Retry-After, timeouts, bad bodies."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from llmkit import ScriptedServer, Turn, scripted_server

from evolution.errors import LLMError
from runtime.llm_client import LLMClient
from runtime.llm_config import ModelConfig


@pytest.fixture
def llm_server() -> Iterator[ScriptedServer]:
    with scripted_server() as server:
        yield server


MESSAGES = [{"role": "user", "content": "make it faster"}]


def model(server: ScriptedServer, **extra: object) -> ModelConfig:
    return ModelConfig(endpoint=server.url, model="scripted-1", **extra)  # type: ignore[arg-type]


class Waits(list[float]):
    """The client's sleep: records the waits instead of spending them (the clock is handed in)."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client(waits: Waits | None = None, **options: object) -> LLMClient:
    return LLMClient(
        {"scripted-1": "sk-test-key"},
        sleep=waits if waits is not None else Waits(),
        backoff=0.5,
        max_backoff=8.0,
        **options,  # type: ignore[arg-type]
    )


def test_a_reply_with_its_usage_and_the_key_in_the_header(llm_server: ScriptedServer) -> None:
    llm_server.script(Turn("the answer", tokens_in=321, tokens_out=45))
    done = client().complete(model(llm_server, max_tokens=99), MESSAGES)
    assert (done.text, done.tokens_in, done.tokens_out, done.attempts) == ("the answer", 321, 45, 1)
    assert done.latency >= 0 and not done.estimated
    (request,) = llm_server.received
    assert request.path == "/v1/chat/completions"
    assert request.headers["Authorization"] == "Bearer sk-test-key"
    assert request.body["model"] == "scripted-1" and request.body["max_tokens"] == 99
    assert request.body["messages"] == MESSAGES


def test_a_429_is_retried_after_the_time_the_server_asks(llm_server: ScriptedServer) -> None:
    llm_server.script(Turn(status=429, raw="{}", headers={"Retry-After": "3"}), Turn("ok"))
    waits = Waits()
    done = client(waits).complete(model(llm_server), MESSAGES)
    assert done.text == "ok" and done.attempts == 2
    assert waits == [3.0]
    assert len(llm_server.received) == 2


def test_retry_after_is_capped_and_backoff_doubles(llm_server: ScriptedServer) -> None:
    llm_server.script(
        Turn(status=503, raw="busy", headers={"Retry-After": "3600"}),
        Turn(status=502, raw="bad gateway"),
        Turn(status=500, raw="oops"),
        Turn("ok"),
    )
    waits = Waits()
    assert client(waits).complete(model(llm_server), MESSAGES).attempts == 4
    assert waits == [8.0, 1.0, 2.0]  # capped Retry-After, then 0.5 × 2^(n-1)


def test_500s_until_the_retries_are_spent_is_an_error_naming_the_endpoint(
    llm_server: ScriptedServer,
) -> None:
    llm_server.script(*[Turn(status=500, raw="down")] * 5)
    with pytest.raises(LLMError) as caught:
        client(retries=2).complete(model(llm_server), MESSAGES)
    assert f"{llm_server.url}/chat/completions: HTTP 500, after 3 attempt(s)" in str(caught.value)
    assert len(llm_server.received) == 3


def test_a_timeout_is_retried_then_reported(llm_server: ScriptedServer) -> None:
    llm_server.script(Turn("late", delay=2.0), Turn("late again", delay=2.0))
    with pytest.raises(LLMError, match=r"timed out \(0.2 s\), after 2 attempt\(s\)"):
        client(retries=1).complete(model(llm_server, timeout=0.2), MESSAGES)


def test_a_timeout_then_an_answer_is_an_answer(llm_server: ScriptedServer) -> None:
    llm_server.script(Turn("late", delay=2.0), Turn("in time"))
    assert client().complete(model(llm_server, timeout=0.2), MESSAGES).text == "in time"


@pytest.mark.parametrize(
    ("turn", "reason"),
    [
        (
            Turn(raw="<html><body>502 Bad Gateway</body></html>", content_type="text/html"),
            r"not JSON \(text/html\)",
        ),
        (Turn(raw="\x00\x01garbage{{{"), "not JSON"),
        (Turn(raw='{"error": "no"}'), "no choices"),
        (Turn(raw='{"choices": []}'), "no choices"),
        (Turn(raw="[1, 2]"), "no choices"),
        (Turn(raw='{"choices": [{"message": {"content": 7}}]}'), "content is missing or not text"),
        (Turn(raw='{"choices": ["x"]}'), "content is missing or not text"),
        (Turn(status=401, raw='{"error": "bad key"}'), "HTTP 401"),
        (Turn(raw="not gzip at all", headers={"Content-Encoding": "gzip"}), "could not be read"),
        (Turn(raw="[" * 100_000 + "]" * 100_000), "not JSON"),
        (Turn(status=302, raw="", headers={"Location": "/elsewhere"}), "HTTP 302"),
    ],
)
def test_bodies_that_are_not_an_openai_reply_are_errors_not_crashes(
    llm_server: ScriptedServer, turn: Turn, reason: str
) -> None:
    llm_server.script(turn)
    with pytest.raises(LLMError, match=reason) as caught:
        client().complete(model(llm_server), MESSAGES)
    assert llm_server.url in str(caught.value)
    assert "sk-test-key" not in str(caught.value)
    assert len(llm_server.received) == 1  # not retried


def test_missing_usage_is_estimated_so_the_budget_still_counts(llm_server: ScriptedServer) -> None:
    llm_server.script(Turn(raw='{"choices": [{"message": {"content": "12345678"}}]}'))
    done = client().complete(model(llm_server), MESSAGES)
    assert done.estimated and done.tokens_out == 3 and done.tokens_in > 0


def test_nothing_listening_is_a_connection_error(llm_server: ScriptedServer) -> None:
    dead = ModelConfig(endpoint="http://127.0.0.1:9/v1", model="scripted-1", timeout=2)
    with pytest.raises(LLMError, match="connection failed"):
        client(retries=1).complete(dead, MESSAGES)


def test_repr_never_shows_a_key() -> None:
    assert "sk-test-key" not in repr(client())
