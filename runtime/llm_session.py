"""A run's conversation with its models: budget, cache, bandit, one retry, a candidate or a reason.

This is the LLM generator's I/O half (the pure half is ``evolution/llm_*.py``).  For one
target it chooses a model (the bandit), builds the prompt, asks (from the cache when
the same model was asked the same thing before, else over HTTP within the budget),
parses the reply strictly, and if the reply does not apply asks once more with the
reason appended.  Whatever goes wrong ends as an :class:`LLMError` whose message is the
reason a failed candidate is recorded with; nothing here raises anything else on a
model's account.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from evolution.errors import BudgetSpent, LLMError, ReplyError, TarsError
from evolution.generate import Candidate, from_files
from evolution.llm_bandit import ModelRecord, choose_model
from evolution.llm_budget import Spend, combined, cost, describe, exhausted
from evolution.llm_prompt import (
    Attempt,
    Message,
    Target,
    build_messages,
    prompt_hash,
    shown_code,
    with_error,
)
from evolution.llm_reply import apply_blocks, parse_blocks
from evolution.llm_usage import ArmRecord, Call, Failure, Usage, per_model
from evolution.manifest import Manifest
from evolution.tree import Tree
from runtime.llm_cache import CachedReply, ReplyCache, RequestRecord
from runtime.llm_client import LLMClient
from runtime.llm_config import LLMConfig, ModelConfig, api_keys, load_llm_config

log = logging.getLogger("tars.llm")

MUTATOR_PREFIX = "llm:"


class LLMSession:
    """One run's models, budget, cache and spend."""

    def __init__(self, config: LLMConfig, client: LLMClient, cache: ReplyCache) -> None:
        self.config = config
        self.client = client
        self.cache = cache
        self.spend = Spend()
        self.stopped: str | None = None
        self.failures: list[str] = []
        #: every call and failure of the run, in order; a cycle's share goes to the log
        #: (:meth:`usage_since`), where the bandit reads it back after a restart
        self.calls: list[Call] = []
        self.failed: list[Failure] = []
        self._lock = threading.Lock()
        #: names this run's records in the log, so that :meth:`memory` counts the log's
        #: records of other runs (before a restart, another leader's) and its own from memory
        self.id = uuid.uuid4().hex[:12]
        #: what other runs spent, counted against the budget too (a swarm's whole log:
        #: every node, every restart; set before each cycle); nothing for a one-node run
        self.elsewhere = Spend()
        #: a `.tars` script's prompt block (``tars run``): the user message for a target,
        #: from the target and its code, instead of the built-in one (docs/language.md)
        self.instructions: Callable[[Target, str], str] | None = None

    @classmethod
    def open(cls, path: Path, environ: Mapping[str, str] | None = None) -> LLMSession:
        """The session ``--llm FILE`` asks for: config, keys from the environment, client, cache."""
        config = load_llm_config(path)
        keys = api_keys(config, os.environ if environ is None else environ, str(path))
        client = LLMClient(
            keys, retries=config.retries, backoff=config.backoff, max_backoff=config.max_backoff
        )
        return cls(config, client, ReplyCache(Path(config.cache)))

    def close(self) -> None:
        self.client.close()
        self.cache.close()

    # -- one proposal ----------------------------------------------------------------

    def propose(
        self,
        tree: Tree,
        version: str,
        manifest: Manifest,
        target: Target,
        attempts: Sequence[Attempt],
        rng: random.Random,
        past: Sequence[Usage] = (),
    ) -> Candidate:
        """A candidate for ``target`` from a model; :class:`LLMError` with the reason if none."""
        model = self.choose(attempts, rng, past)
        where = f"{MUTATOR_PREFIX}{model.arm} on {target.file}:{target.function}"
        try:
            messages = build_messages(tree, manifest, version, target, attempts)
            if self.instructions is not None:
                code, _ = shown_code(tree, manifest, target)
                user = self.instructions(target, code)
                messages = [messages[0], {"role": "user", "content": user}]
            digest, files, tokens = self._converse(model, messages, tree, manifest)
            return from_files(
                tree,
                version,
                files,
                mutator=f"{MUTATOR_PREFIX}{model.arm}",
                kind="llm",
                file=target.file,
                function=target.function,
                line=target.line,
                description=f"{MUTATOR_PREFIX}{model.arm} rewrite of {target.function} "
                f"({target.file}:{target.line}), prompt {digest[:12]}, {tokens:,} tokens",
            )
        except TarsError as exc:
            reason = f"{where}: {exc}"
            kind = exc.kind if isinstance(exc, LLMError) else "prompt"
            self.failures.append(reason)
            if isinstance(exc, BudgetSpent):
                self.stopped = str(exc)
            with self._lock:
                self.failed.append(
                    Failure(model.arm, f"{target.file}:{target.function}", kind, reason)
                )
            log.warning("llm candidate failed (%s): %s", kind, reason)
            raise LLMError(reason, kind=kind) from None

    def _converse(
        self, model: ModelConfig, messages: list[Message], tree: Tree, manifest: Manifest
    ) -> tuple[str, dict[str, str], int]:
        """Ask; on a reply that does not apply, ask once more with the reason.

        Returns the hash of the prompt that was answered, the rewritten files, and the
        tokens the conversation used as the endpoint reported them (the same from the cache).
        """
        reply = self.ask(model, messages)
        try:
            files = _applied(tree, manifest, reply.text)
            return prompt_hash(model.model, messages), files, reply.tokens
        except ReplyError as first:
            again = with_error(messages, reply.text, str(first))
            second_reply = self.ask(model, again)
            try:
                files = _applied(tree, manifest, second_reply.text)
            except ReplyError as second:
                raise ReplyError(
                    f"reply refused: {second} (retried once after: {first.message})",
                    kind=second.kind,
                ) from None
            return prompt_hash(model.model, again), files, reply.tokens + second_reply.tokens

    def choose(
        self, attempts: Sequence[Attempt], rng: random.Random, past: Sequence[Usage] = ()
    ) -> ModelConfig:
        """The bandit's pick among the configured models, from the log's outcomes and this run's spend."""
        models = {m.arm: m for m in self.config.models}
        if len(models) == 1:
            return next(iter(models.values()))
        arm, why = choose_model(
            list(models), self.memory(attempts, past), rng, by_money=self.config.by_money
        )
        log.info("llm model chosen: %s", why)
        return models[arm]

    def memory(
        self, attempts: Sequence[Attempt], past: Sequence[Usage] = ()
    ) -> dict[str, ModelRecord]:
        """Per model: candidates judged in the log, tries that gave none and spend (from the
        log's cycles of other runs, ``past``, and this run's own calls); wins.

        A restarted node, or a new leader, thus knows what the runs before it spent and
        which model kept failing; its own run's records are counted once, from memory.
        """
        judged: dict[str, tuple[int, int]] = {}
        for attempt in attempts:
            if attempt.mutator.startswith(MUTATOR_PREFIX):
                arm = attempt.mutator[len(MUTATOR_PREFIX) :]
                tries, wins = judged.get(arm, (0, 0))
                judged[arm] = (tries + 1, wins + (attempt.verdict == "adopt"))
        with self._lock:
            mine = Usage(tuple(self.calls), tuple(self.failed))
        spent = per_model([*(u for u in past if u.run_id != self.id), mine])
        out: dict[str, ModelRecord] = {}
        for model in self.config.models:
            tries, wins = judged.get(model.arm, (0, 0))
            record = spent.get(model.arm, ArmRecord())
            out[model.arm] = ModelRecord(
                tries=tries + record.failures,
                wins=wins,
                tokens=record.tokens,
                money=record.money,
            )
        return out

    # -- what the log keeps of a cycle -------------------------------------------------

    def mark(self) -> tuple[int, int]:
        """Where the current cycle's calls and failures begin (see :meth:`usage_since`)."""
        with self._lock:
            return len(self.calls), len(self.failed)

    def usage_since(self, mark: tuple[int, int]) -> Usage:
        """The calls and failures after ``mark`` (one cycle's), with the run's spend and caps.

        The caller records it in the cycle's event (``evolution.llm_usage.to_log``).
        """
        calls, failed = mark
        with self._lock:
            usage = Usage(
                tuple(self.calls[calls:]),
                tuple(self.failed[failed:]),
                self.spend,
                self.config.limits,
                (self.stopped or "")
                if any(f.kind == "budget" for f in self.failed[failed:])
                else "",
                self.id,
            )
        return usage

    # -- one request -----------------------------------------------------------------

    def ask(self, model: ModelConfig, messages: Sequence[Message]) -> CachedReply:
        """The reply text: from the cache if this model was asked this before, else paid for within the budget."""
        digest = prompt_hash(model.model, messages)
        cached = self.cache.get(digest)
        if cached is not None:
            self.spend = self.spend.hit()
            self._journal(RequestRecord(model.arm, digest, 0, 0, 0.0, True, 0, "cache hit"), 0.0)
            return cached
        reason = exhausted(combined(self.spend, self.elsewhere), self.config.limits)
        if reason is not None:
            raise BudgetSpent(reason, hint="raise the budget in llm.yml to ask more")
        try:
            done = self.client.complete(model, messages)
        except LLMError as exc:
            self.spend = self.spend.failure()
            outcome = f"failed ({exc.kind}): {exc.message}"
            self._journal(RequestRecord(model.arm, digest, 0, 0, 0.0, False, 0, outcome), 0.0)
            raise
        self.spend = self.spend.paid(model.price, done.tokens_in, done.tokens_out)
        reply = CachedReply(done.text, done.tokens_in, done.tokens_out)
        self.cache.put(digest, model.model, reply)
        outcome = "ok (tokens estimated)" if done.estimated else "ok"
        self._journal(
            RequestRecord(
                model.arm,
                digest,
                done.tokens_in,
                done.tokens_out,
                done.latency,
                False,
                done.attempts,
                outcome,
            ),
            cost(model.price, done.tokens_in, done.tokens_out),
        )
        return reply

    def _journal(self, record: RequestRecord, money: float) -> None:
        self.cache.journal(record)
        call = Call(
            record.model,
            record.prompt_hash,
            record.tokens_in,
            record.tokens_out,
            money,
            record.latency,
            record.cached,
            record.attempts,
            record.outcome,
        )
        with self._lock:
            self.calls.append(call)
        log.info(
            "llm request model=%s prompt=%s tokens=%d+%d latency=%.3fs cached=%s attempts=%d %s",
            record.model,
            record.prompt_hash[:12],
            record.tokens_in,
            record.tokens_out,
            record.latency,
            record.cached,
            record.attempts,
            record.outcome,
        )

    def summary(self) -> str:
        """The run's spend against its limits, and why it stopped asking if it did."""
        line = f"llm spend: {describe(self.spend, self.config.limits)}"
        return f"{line}; stopped asking: {self.stopped}" if self.stopped else line


def _applied(tree: Tree, manifest: Manifest, text: str) -> dict[str, str]:
    """The files a reply's blocks rewrite; a :class:`ReplyError` whose kind says whether the
    reply did not parse ("unparsed") or its blocks did not apply ("not applied")."""
    blocks = parse_blocks(text)
    try:
        return apply_blocks(tree, manifest, blocks)
    except ReplyError as exc:
        exc.kind = "not applied"
        raise
