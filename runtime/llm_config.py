"""llm.yml: which models a run may ask, how, and how much it may spend.

There is no default file and no default model: a model's code is untrusted input, so
the generator exists only when a user passes ``--llm FILE``.  The file names the
*environment variable* that holds each API key, never the key: a config file is copied,
committed and shown in logs, an environment is not.  A run must cap its spend (at least
one of ``budget_tokens``, ``budget_money``, ``max_requests``), so a loop cannot run up a
bill.  Errors name the file, the key and the fix, like the manifest's.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from evolution.errors import ConfigError
from evolution.llm_budget import Limits, Price

_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(_Strict):
    #: the arm's name in candidates (``llm:<name>``) and in the spend; defaults to ``model``
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$")] | None = None
    #: OpenAI-compatible base URL: requests go to ``{endpoint}/chat/completions``
    endpoint: Annotated[str, Field(pattern=r"^https?://\S+$")]
    model: Annotated[str, Field(min_length=1, max_length=200)]
    #: NAME of the environment variable holding the key; omit for a local server without one
    api_key_env: Annotated[str, Field(pattern=_ENV_NAME)] | None = None
    max_tokens: Annotated[int, Field(ge=16, le=200_000)] = 2048
    #: seconds for one request (connect, send, wait, read)
    timeout: Annotated[float, Field(gt=0, le=3600)] = 120.0
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.0
    #: price per 1,000 prompt / completion tokens, in whatever currency budget_money uses
    price_in: Annotated[float, Field(ge=0)] = 0.0
    price_out: Annotated[float, Field(ge=0)] = 0.0

    @property
    def arm(self) -> str:
        return self.name or self.model

    @property
    def price(self) -> Price:
        return Price(self.price_in, self.price_out)

    @property
    def url(self) -> str:
        return self.endpoint.rstrip("/") + "/chat/completions"


class LLMConfig(_Strict):
    models: Annotated[list[ModelConfig], Field(min_length=1)]
    budget_tokens: Annotated[int, Field(ge=1)] | None = None
    budget_money: Annotated[float, Field(gt=0)] | None = None
    max_requests: Annotated[int, Field(ge=1)] | None = None
    #: the reply cache (SQLite); relative to the config file's folder
    cache: Annotated[str, Field(min_length=1)] = "llm-cache.sqlite"
    #: functions the model is asked about per cycle (the top plans', then the largest)
    per_cycle: Annotated[int, Field(ge=1, le=16)] = 1
    #: retries after the first attempt on timeouts, connection errors, 429 and 5xx
    retries: Annotated[int, Field(ge=0, le=10)] = 3
    #: first backoff in seconds, doubled each retry, capped at max_backoff (and Retry-After too)
    backoff: Annotated[float, Field(ge=0, le=60)] = 1.0
    max_backoff: Annotated[float, Field(ge=0, le=600)] = 30.0

    @model_validator(mode="after")
    def _checked(self) -> LLMConfig:
        if self.budget_tokens is None and self.budget_money is None and self.max_requests is None:
            raise ValueError(
                "no budget: set budget_tokens, budget_money or max_requests "
                "(a run must cap what it may spend)"
            )
        arms = [m.arm for m in self.models]
        doubled = sorted({a for a in arms if arms.count(a) > 1})
        if doubled:
            raise ValueError(f"two models are named {doubled[0]!r}: give each a distinct name")
        if self.budget_money is not None and not any(
            m.price_in or m.price_out for m in self.models
        ):
            raise ValueError("budget_money is set but no model has price_in or price_out")
        return self

    @property
    def limits(self) -> Limits:
        return Limits(self.budget_tokens, self.budget_money, self.max_requests)

    @property
    def by_money(self) -> bool:
        """Whether the bandit weighs cost in money (prices given) or in tokens."""
        return any(m.price_in or m.price_out for m in self.models)


_FIXES = {
    "missing": "add it",
    "extra_forbidden": "remove it or check its spelling (see docs/llm.md)",
    "string_pattern_mismatch": "see docs/llm.md for the allowed form",
}


def parse_llm_config(text: str, source: str) -> LLMConfig:
    """Validate llm.yml's text; one :class:`ConfigError` naming ``source``, the key and the fix."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({exc})", hint="fix the syntax") from exc
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a mapping with a models: list", hint="see docs/llm.md"
        )
    try:
        return LLMConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "(top level)"
        fix = _FIXES.get(first["type"], "see docs/llm.md")
        raise ConfigError(f"{source}: key '{key}': {first['msg']}", hint=fix) from exc


def load_llm_config(path: Path) -> LLMConfig:
    """Read and validate llm.yml; a relative ``cache`` is resolved beside the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot be read ({exc.strerror})", hint="pass --llm PATH to an llm.yml"
        ) from exc
    config = parse_llm_config(text, str(path))
    cache = Path(config.cache)
    if not cache.is_absolute():
        config = config.model_copy(update={"cache": str(path.parent / cache)})
    return config


def api_keys(config: LLMConfig, environ: Mapping[str, str], source: str) -> dict[str, str]:
    """Each model's key (by arm) read from its environment variable; an unset one is an error naming it."""
    keys: dict[str, str] = {}
    for index, model in enumerate(config.models):
        if model.api_key_env is None:
            continue
        value = environ.get(model.api_key_env, "")
        if not value:
            raise ConfigError(
                f"{source}: key 'models.{index}.api_key_env': the environment variable "
                f"{model.api_key_env} is not set",
                hint=f"export {model.api_key_env}=... before the run, or remove api_key_env "
                "for an endpoint that needs no key",
            )
        keys[model.arm] = value
    return keys
