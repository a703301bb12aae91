"""What one cycle's conversation with the language models cost, and where it failed.

The log keeps it as the ``llm`` field of the cycle's ``CycleCompleted`` event (and of the
swarm's ``cycle`` ledger entry that becomes it; docs/llm.md, "What is recorded where"):
every call (model, prompt hash, tokens, money, latency, from the cache or not, outcome),
every failure with its kind and reason, the cycle's spend, the run's spend after it and
the budget it counts against.  This module turns those records into the plain map the
event stores and back, and sums them, so ``tars log llm``, the bandit's memory after a
restart and the tests read one shape.  Pure: no clock, no I/O.

Reading back is defensive: the map crossed the ledger from a peer, so a field of the
wrong type is dropped, not trusted, and text is cut to :data:`MAX_TEXT` characters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from evolution.llm_budget import Limits, Spend

#: What a failure is filed under (``LLMError.kind``): the endpoint did not answer in time,
#: could not be reached, answered an HTTP error (429 and 5xx after the retries), answered
#: something that is not a chat completion; the reply had no well-formed SEARCH/REPLACE
#: block, or its blocks did not apply to the sources; the budget was spent; or the prompt
#: could not be built (a held-out or missing file).
FAILURE_KINDS = (
    "timeout",
    "unreachable",
    "http",
    "garbage",
    "unparsed",
    "not applied",
    "budget",
    "prompt",
)
#: Longest text (a reason, an outcome) kept in the log per item.
MAX_TEXT = 500
#: Most calls and failures one cycle's record keeps (a cycle asks about at most 16
#: functions, twice each: more is not from TARS).
MAX_ITEMS = 64


@dataclass(frozen=True)
class Call:
    """One request to a model, sent or answered from the cache."""

    model: str
    prompt: str
    tokens_in: int
    tokens_out: int
    money: float
    latency: float
    cached: bool
    attempts: int
    outcome: str

    @property
    def ok(self) -> bool:
        return not self.outcome.startswith("failed")


@dataclass(frozen=True)
class Failure:
    """A target the model was asked about that gave no candidate, and why."""

    model: str
    target: str
    kind: str
    reason: str


@dataclass(frozen=True)
class Usage:
    """One cycle's calls and failures, the run's spend after it, and the caps."""

    calls: tuple[Call, ...] = ()
    failures: tuple[Failure, ...] = ()
    run: Spend = Spend()
    limits: Limits = Limits()
    #: why the run stopped asking, when the budget ran out in this cycle
    stopped: str = ""
    #: which run (``LLMSession.id``) made these calls
    run_id: str = ""

    @property
    def spend(self) -> Spend:
        """This cycle's spend, summed from its calls (a cached call costs nothing)."""
        return spend_of(self.calls)

    @property
    def empty(self) -> bool:
        return not self.calls and not self.failures and not self.stopped


def spend_of(calls: Iterable[Call]) -> Spend:
    """Requests sent (failed ones too), tokens, money and cache hits of ``calls``."""
    requests = failed = hits = tokens_in = tokens_out = 0
    money = 0.0
    for call in calls:
        if call.cached:
            hits += 1
            continue
        requests += 1
        failed += not call.ok
        tokens_in += call.tokens_in
        tokens_out += call.tokens_out
        money += call.money
    return Spend(requests, tokens_in, tokens_out, money, hits, failed)


def _spend_map(spend: Spend) -> dict[str, Any]:
    return {
        "requests": spend.requests,
        "failed": spend.failed,
        "tokens_in": spend.tokens_in,
        "tokens_out": spend.tokens_out,
        "money": spend.money,
        "cache_hits": spend.cache_hits,
    }


def to_log(usage: Usage) -> dict[str, Any]:
    """The map the cycle's event stores (empty when no model was asked: the field is left out)."""
    if usage.empty:
        return {}
    out: dict[str, Any] = {
        "calls": [
            {
                "model": c.model,
                "prompt": c.prompt,
                "tokens_in": c.tokens_in,
                "tokens_out": c.tokens_out,
                "money": c.money,
                "latency": round(c.latency, 4),
                "cached": c.cached,
                "attempts": c.attempts,
                "outcome": c.outcome[:MAX_TEXT],
            }
            for c in usage.calls[:MAX_ITEMS]
        ],
        "failures": [
            {"model": f.model, "target": f.target, "kind": f.kind, "reason": f.reason[:MAX_TEXT]}
            for f in usage.failures[:MAX_ITEMS]
        ],
        "spend": _spend_map(usage.spend),
        "run": _spend_map(usage.run),
        "budget": {
            "tokens": usage.limits.tokens,
            "money": usage.limits.money,
            "requests": usage.limits.requests,
        },
    }
    if usage.stopped:
        out["stopped"] = usage.stopped[:MAX_TEXT]
    if usage.run_id:
        out["run_id"] = usage.run_id[:MAX_TEXT]
    return out


def _int(value: Any) -> int:
    return value if type(value) is int and value >= 0 else 0


def _float(value: Any) -> float:
    return float(value) if type(value) in (int, float) and value >= 0 else 0.0


def _text(value: Any) -> str:
    return value[:MAX_TEXT] if isinstance(value, str) else ""


def _maps(value: Any) -> list[Mapping[str, Any]]:
    return (
        [item for item in value[:MAX_ITEMS] if isinstance(item, dict)]
        if isinstance(value, list)
        else []
    )


def _read_spend(value: Any) -> Spend:
    if not isinstance(value, dict):
        return Spend()
    return Spend(
        _int(value.get("requests")),
        _int(value.get("tokens_in")),
        _int(value.get("tokens_out")),
        _float(value.get("money")),
        _int(value.get("cache_hits")),
        _int(value.get("failed")),
    )


def _optional(value: Any, kind: type) -> Any:
    return value if type(value) is kind or (kind is float and type(value) is int) else None


def from_log(data: Any) -> Usage:
    """A stored ``llm`` map read back; anything malformed is dropped (it crossed the ledger)."""
    if not isinstance(data, dict):
        return Usage()
    calls = tuple(
        Call(
            _text(c.get("model")),
            _text(c.get("prompt")),
            _int(c.get("tokens_in")),
            _int(c.get("tokens_out")),
            _float(c.get("money")),
            _float(c.get("latency")),
            c.get("cached") is True,
            _int(c.get("attempts")),
            _text(c.get("outcome")),
        )
        for c in _maps(data.get("calls"))
    )
    failures = tuple(
        Failure(
            _text(f.get("model")),
            _text(f.get("target")),
            kind if (kind := f.get("kind")) in FAILURE_KINDS else "prompt",
            _text(f.get("reason")),
        )
        for f in _maps(data.get("failures"))
    )
    found = data.get("budget")
    budget: Mapping[str, Any] = found if isinstance(found, dict) else {}
    limits = Limits(
        _optional(budget.get("tokens"), int),
        _optional(budget.get("money"), float),
        _optional(budget.get("requests"), int),
    )
    run, stopped, run_id = _read_spend(data.get("run")), data.get("stopped"), data.get("run_id")
    return Usage(calls, failures, run, limits, _text(stopped), _text(run_id))


@dataclass(frozen=True)
class ArmRecord:
    """One model's record in the log: tries that gave no candidate, tokens and money spent."""

    failures: int = 0
    tokens: int = 0
    money: float = 0.0


def per_model(usages: Iterable[Usage]) -> dict[str, ArmRecord]:
    """Each model's failures and spend over ``usages`` (what the bandit remembers after a restart)."""
    out: dict[str, ArmRecord] = {}
    for usage in usages:
        for call in usage.calls:
            seen = out.get(call.model, ArmRecord())
            out[call.model] = ArmRecord(
                seen.failures,
                seen.tokens + call.tokens_in + call.tokens_out,
                seen.money + call.money,
            )
        for failure in usage.failures:
            if failure.kind == "budget":
                continue  # the model was not asked: no mark against it
            seen = out.get(failure.model, ArmRecord())
            out[failure.model] = ArmRecord(seen.failures + 1, seen.tokens, seen.money)
    return out


def total(usages: Iterable[Usage]) -> Spend:
    """The spend of every call in ``usages``: what ``tars log llm`` sums up."""
    return spend_of(call for usage in usages for call in usage.calls)
