"""One chat completion from an OpenAI-compatible endpoint, with bounded retries.

``POST {endpoint}/chat/completions`` with httpx.  Timeouts, connection errors, 429 and
5xx are transient: tenacity retries them with exponential backoff (a ``Retry-After`` in
seconds is honoured, capped like the backoff), at most ``retries`` times.  Anything
else, and a reply that is not the OpenAI shape (HTML from a proxy, garbage, no
``choices``), is an :class:`LLMError` naming the endpoint and what was wrong: the
caller records a failed candidate, the node goes on.

The key is sent in the ``Authorization`` header and nowhere else: no error message,
record or log line carries a header.  The clock and the sleep are handed in, so the
latency is measured with the node's clock and a test can see the waits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import tenacity

from evolution.errors import LLMError
from runtime.llm_config import ModelConfig

Clock = Callable[[], float]


@dataclass(frozen=True)
class Completion:
    """A model's answer and what it cost: tokens as the endpoint reported them."""

    text: str
    tokens_in: int
    tokens_out: int
    latency: float
    attempts: int
    estimated: bool = False


class _Transient(Exception):
    """A failure worth retrying, with the server's Retry-After if it gave one."""

    def __init__(self, reason: str, kind: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind  # what the log files it under once retries are spent
        self.retry_after = retry_after


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: the exponential backoff stands in
    return seconds if seconds >= 0 else None


class LLMClient:
    """Sends chat requests; the keys (by model arm) are held here and only here."""

    def __init__(
        self,
        keys: Mapping[str, str],
        *,
        retries: int = 3,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._keys = dict(keys)
        self._http = httpx.Client(transport=transport, follow_redirects=False)
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._clock = clock
        self._sleep = sleep

    def __repr__(self) -> str:  # never the keys
        return f"LLMClient(models={sorted(self._keys)}, retries={self.retries})"

    def close(self) -> None:
        self._http.close()

    def complete(self, model: ModelConfig, messages: Sequence[Mapping[str, str]]) -> Completion:
        """The model's reply to ``messages``; :class:`LLMError` once retries are spent or the reply is unusable."""
        body = {
            "model": model.model,
            "messages": [dict(m) for m in messages],
            "max_tokens": model.max_tokens,
            "temperature": model.temperature,
        }
        headers = {"Content-Type": "application/json"}
        key = self._keys.get(model.arm)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        started = self._clock()
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.retries + 1),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(_Transient),
            sleep=self._sleep,
            reraise=True,
        )
        attempts = 0
        try:
            for attempt in retrying:
                with attempt:
                    attempts += 1
                    response = self._post(model, body, headers)
        except _Transient as exc:
            raise LLMError(
                f"{model.url}: {exc.reason}, after {attempts} attempt(s)",
                hint="check that the endpoint is up, or raise timeout/retries in llm.yml",
                kind=exc.kind,
            ) from None
        text, tokens_in, tokens_out, estimated = _read(model.url, response, messages)
        return Completion(text, tokens_in, tokens_out, self._clock() - started, attempts, estimated)

    def _post(
        self, model: ModelConfig, body: dict[str, Any], headers: dict[str, str]
    ) -> httpx.Response:
        try:
            response = self._http.post(model.url, json=body, headers=headers, timeout=model.timeout)
        except httpx.TimeoutException:
            raise _Transient(f"timed out ({model.timeout:g} s)", "timeout") from None
        except httpx.TransportError as exc:
            raise _Transient(f"connection failed ({type(exc).__name__})", "unreachable") from None
        except httpx.HTTPError as exc:  # a body that cannot be decoded, a redirect loop, …
            raise LLMError(
                f"{model.url}: the reply could not be read ({type(exc).__name__})",
                hint="is the endpoint OpenAI-compatible?",
                kind="garbage",
            ) from None
        if response.status_code == 429 or response.status_code >= 500:
            raise _Transient(f"HTTP {response.status_code}", "http", _retry_after(response))
        if not 200 <= response.status_code < 300:
            raise LLMError(
                f"{model.url}: HTTP {response.status_code} ({_snippet(response.text)})",
                hint="check the endpoint, the model name and the key's environment variable",
                kind="http",
            )
        return response

    def _wait(self, state: tenacity.RetryCallState) -> float:
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            return min(exc.retry_after, self.max_backoff)
        return min(self.backoff * 2 ** (state.attempt_number - 1), self.max_backoff)


def _snippet(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return repr(flat[:limit] + ("…" if len(flat) > limit else ""))


def _read(
    url: str, response: httpx.Response, messages: Sequence[Mapping[str, str]]
) -> tuple[str, int, int, bool]:
    """(text, tokens in, tokens out, estimated) from an OpenAI-shaped body; :class:`LLMError` otherwise."""
    hint = "is the endpoint OpenAI-compatible? it must end before /chat/completions"
    try:
        data = response.json()
    except (ValueError, RecursionError):  # JSON and Unicode decoding errors are ValueErrors
        content_type = response.headers.get("content-type", "no content type")
        raise LLMError(
            f"{url}: the reply is not JSON ({content_type}): {_snippet(response.text)}",
            hint=hint,
            kind="garbage",
        ) from None
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices:
        raise LLMError(
            f"{url}: the reply has no choices: {_snippet(response.text)}", hint=hint, kind="garbage"
        )
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    text = message.get("content") if isinstance(message, dict) else None
    if not isinstance(text, str):
        raise LLMError(
            f"{url}: choices[0].message.content is missing or not text", hint=hint, kind="garbage"
        )
    usage = data.get("usage")
    tokens_in = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    tokens_out = usage.get("completion_tokens") if isinstance(usage, dict) else None
    if isinstance(tokens_in, int) and isinstance(tokens_out, int):
        return text, tokens_in, tokens_out, False
    # No usage reported: a rough count (4 characters a token) still charges the budget.
    sent = sum(len(m.get("content", "")) for m in messages)
    return text, sent // 4 + 1, len(text) // 4 + 1, True
