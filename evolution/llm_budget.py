"""A run's spend on models and the limits it must stay under: arithmetic only.

Money is computed from the tokens a reply reports and the configured prices per 1,000
tokens (input and output priced apart, as hosted APIs bill).  A cached reply costs
nothing and is counted as a hit.  The check runs before each request, so a run stops
asking once a limit is reached; the last request may pass a limit by at most its own
size (its ``max_tokens`` plus its prompt), which the message says with the figures.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Limits:
    """A run's caps; ``None`` is no cap on that figure."""

    tokens: int | None = None
    money: float | None = None
    requests: int | None = None


@dataclass(frozen=True)
class Price:
    """Price per 1,000 tokens sent (prompt) and received (completion)."""

    input_per_1k: float = 0.0
    output_per_1k: float = 0.0


def cost(price: Price, tokens_in: int, tokens_out: int) -> float:
    """What one reply cost."""
    return tokens_in / 1000 * price.input_per_1k + tokens_out / 1000 * price.output_per_1k


@dataclass(frozen=True)
class Spend:
    """What a run paid so far (requests sent, tokens, money) and what the cache saved."""

    requests: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    money: float = 0.0
    cache_hits: int = 0
    failed: int = 0

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out

    def paid(self, price: Price, tokens_in: int, tokens_out: int) -> Spend:
        """This spend after one answered request."""
        return replace(
            self,
            requests=self.requests + 1,
            tokens_in=self.tokens_in + tokens_in,
            tokens_out=self.tokens_out + tokens_out,
            money=self.money + cost(price, tokens_in, tokens_out),
        )

    def hit(self) -> Spend:
        return replace(self, cache_hits=self.cache_hits + 1)

    def failure(self) -> Spend:
        """A request sent that got no usable answer (it counts against ``max_requests``)."""
        return replace(self, requests=self.requests + 1, failed=self.failed + 1)


def combined(*spends: Spend) -> Spend:
    """The sum of several spends (this run's and what the log says other runs spent)."""
    return Spend(
        sum(s.requests for s in spends),
        sum(s.tokens_in for s in spends),
        sum(s.tokens_out for s in spends),
        sum(s.money for s in spends),
        sum(s.cache_hits for s in spends),
        sum(s.failed for s in spends),
    )


def describe(spend: Spend, limits: Limits) -> str:
    """One line of figures: requests, tokens, money, cache hits, each against its cap."""

    def of(value: str, cap: object) -> str:
        return f"{value} of {cap}" if cap is not None else value

    return (
        f"{of(str(spend.requests), limits.requests)} requests ({spend.failed} failed), "
        f"{of(f'{spend.tokens:,}', f'{limits.tokens:,}' if limits.tokens is not None else None)} "
        f"tokens ({spend.tokens_in:,} in, {spend.tokens_out:,} out), "
        f"{of(f'{spend.money:.4f}', f'{limits.money:.4f}' if limits.money is not None else None)} "
        f"money, {spend.cache_hits} cache hits"
    )


def exhausted(spend: Spend, limits: Limits) -> str | None:
    """Why no further request may be sent, with the figures; ``None`` while within every cap."""
    if limits.requests is not None and spend.requests >= limits.requests:
        what = "request"
    elif limits.tokens is not None and spend.tokens >= limits.tokens:
        what = "token"
    elif limits.money is not None and spend.money >= limits.money:
        what = "money"
    else:
        return None
    return f"{what} budget spent: {describe(spend, limits)}"
