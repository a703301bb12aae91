"""Generator: turns plans into candidate patches (AST rewrites, tunable constants, a model).

Offline (the default) it applies the plans' mutators.  With a language model configured
(``tars evolve run --llm FILE``: the CLI builds the session and hands it in, there is no
other way to turn it on) it also asks the model about the functions of the cycle's top
plans (``evolution/llm_targets.py``: the top K regardless of kind, since no plan names a
model) and puts the model's candidates first, as the user chose to pay for them.  A
model that fails gives a reason in ``Generated.failures``, never an exception.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, ClassVar

from actors.base import RoleActor
from actors.messages import Generate, Generated
from evolution.errors import TarsError, UnknownGenomeError
from evolution.generate import Candidate, from_rewrite
from evolution.llm_budget import Spend, combined
from evolution.llm_prompt import Attempt
from evolution.llm_targets import choose_targets
from evolution.llm_usage import Usage, from_log, to_log
from evolution.manifest import MANIFEST_NAME, parse_manifest
from evolution.mutators import by_name
from evolution.mutators.base import Site
from evolution.planner import Plan

if TYPE_CHECKING:
    from actors.supervisor import Supervisor
    from events.store import GenomeStore
    from runtime.llm_session import LLMSession

#: A genome's recent judged candidates, newest last (what a prompt tells the model).
History = Callable[[str], Sequence[Attempt]]
#: A genome's recent cycles' model usage (calls, failures), as the log keeps it.
Spent = Callable[[str], Sequence[Usage]]
#: What runs other than the given one (``LLMSession.id``) spent, by the whole log.
Elsewhere = Callable[[str], Spend]
#: Events of the log a prompt's history is read from.
HISTORY_EVENTS = 400

#: Everything of a plan that ``_one`` reads.
_Key = tuple[str, str, str, int, str, str, float]
#: Versions whose candidates the generator remembers (a cycle that adopts nothing plans
#: the same head again, usually with the same opportunities).
_REMEMBERED_VERSIONS = 4


class Generator(RoleActor):
    role: ClassVar[str] = "generator"
    handlers: ClassVar[dict[type, str]] = {Generate: "on_generate"}

    def __init__(
        self,
        llm: LLMSession | None = None,
        history: History | None = None,
        spent: Spent | None = None,
        elsewhere: Elsewhere | None = None,
    ) -> None:
        super().__init__()
        self._llm = llm
        self._history: History = history or _no_history
        self._spent: Spent = spent or _nothing_spent
        self._elsewhere = elsewhere
        # version -> (mutator and the opportunity's fields) -> the candidate, or why it could not be made.  A
        # version id is the hash of its tree, and generating is a pure function of the
        # tree and the plan, so a remembered answer is the answer.
        self._made: dict[str, dict[_Key, Candidate | str]] = {}

    def on_generate(self, message: Generate) -> Generated:
        offline = self._offline(message)
        if self._llm is None:
            return offline
        mark = self._llm.mark()
        asked, failures = self._ask_model(self._llm, message)
        ids = {c.id for c in asked}
        return Generated(
            asked + [c for c in offline.candidates if c.id not in ids],
            failures + offline.failures,
            to_log(self._llm.usage_since(mark)),
        )

    def _ask_model(self, llm: LLMSession, message: Generate) -> tuple[list[Candidate], list[str]]:
        """The model's candidates for the top plans' functions, and the reasons of those it could not give."""
        if self._elsewhere is not None:
            llm.elsewhere = self._elsewhere(llm.id)
        if llm.stopped:
            return [], []  # said once, when the budget ran out
        try:
            manifest = parse_manifest(message.tree.get(MANIFEST_NAME, ""), MANIFEST_NAME)
        except TarsError as exc:
            return [], [f"llm: the model was not asked: {exc}"]
        attempts = list(self._history(manifest.name))
        past = list(self._spent(manifest.name))
        # Seeded by the state the prompt is built from: a replay chooses the same models.
        rng = random.Random(f"llm:{message.version}:{len(attempts)}")
        candidates: list[Candidate] = []
        failures: list[str] = []
        for target in choose_targets(message.plans, message.tree, manifest, llm.config.per_cycle):
            if llm.stopped:
                break
            try:
                made = llm.propose(
                    message.tree, message.version, manifest, target, attempts, rng, past
                )
            except TarsError as exc:
                failures.append(str(exc))
                continue
            if all(made.id != c.id for c in candidates):
                candidates.append(made)
        return candidates, failures

    def _offline(self, message: Generate) -> Generated:
        candidates: list[Candidate] = []
        failures: list[str] = []
        seen: set[str] = set()
        for item in message.plans:
            made = self._remembered(message.version)
            opp = item.opportunity
            key = (
                item.mutator,
                opp.file,
                opp.function,
                opp.line,
                opp.kind,
                opp.evidence,
                opp.expected_gain,
            )
            candidate_or_error = made.get(key)
            if candidate_or_error is None:
                try:
                    candidate_or_error = self._one(message, item)
                except TarsError as exc:
                    candidate_or_error = str(exc)
                made[key] = candidate_or_error
            if isinstance(candidate_or_error, str):
                failures.append(candidate_or_error)
                continue
            candidate = candidate_or_error
            if candidate.id not in seen:
                seen.add(candidate.id)
                candidates.append(candidate)
        return Generated(candidates, failures)

    def _remembered(self, version: str) -> dict[_Key, Candidate | str]:
        made = self._made.get(version)
        if made is None:
            while len(self._made) >= _REMEMBERED_VERSIONS:
                self._made.pop(next(iter(self._made)))
            made = self._made[version] = {}
        return made

    def _one(self, message: Generate, item: Plan) -> Candidate:
        opp = item.opportunity
        mutator = by_name(item.mutator)
        site = Site(
            file=opp.file,
            function=opp.function,
            line=opp.line,
            kind=opp.kind,
            # the mutator's own words for the site: ``apply`` tells two rewrites at one
            # line apart by them (the evidence is the analyzer's prose around them)
            detail=str(getattr(opp, "detail", "") or opp.evidence),
            weight=float(getattr(opp, "weight", opp.expected_gain)),
        )
        return from_rewrite(
            message.tree,
            message.version,
            opp.file,
            lambda source: mutator.apply(source, site),
            mutator=mutator.name,
            kind=opp.kind,
            function=opp.function,
            line=opp.line,
            description=f"{mutator.name} in {opp.function} ({opp.file}:{opp.line}): {opp.evidence}",
        )


def _no_history(genome: str) -> Sequence[Attempt]:
    return ()


def _nothing_spent(genome: str) -> Sequence[Usage]:
    return ()


def history_from_store(store: GenomeStore, events: int = HISTORY_EVENTS) -> History:
    """The genome's judged candidates among its newest ``events`` events, read from the store."""

    def read(genome: str) -> list[Attempt]:
        try:
            rows, _ = store.log_tail(events, genome=genome)
        except UnknownGenomeError:
            return []  # `tars evolve generate` on a folder the store does not hold: no history
        out: list[Attempt] = []
        for _seq, kind, _genome, _version, parent, _t, _node, data, _pos in rows:
            if kind != "CandidateEvaluated":
                continue
            ratio = data.get("ratio")
            out.append(
                Attempt(
                    parent=str(parent or ""),
                    mutator=str(data.get("mutator", "")),
                    kind=str(data.get("kind", "")),
                    verdict=str(data.get("verdict", "")),
                    reasons=tuple(str(r) for r in data.get("reasons") or ()),
                    ratio=float(ratio) if isinstance(ratio, int | float) else None,
                    patch=str(data.get("patch", "")),
                )
            )
        return out

    return read


def spent_from_store(store: GenomeStore, events: int = HISTORY_EVENTS) -> Spent:
    """The model usage of the genome's cycles among its newest ``events`` events (the
    ``llm`` field of ``CycleCompleted``): what the bandit remembers across restarts."""

    def read(genome: str) -> list[Usage]:
        try:
            rows, _ = store.log_tail(events, genome=genome)
        except UnknownGenomeError:
            return []
        return [
            from_log(row[7]["llm"])
            for row in rows
            if row[1] == "CycleCompleted" and "llm" in row[7]
        ]

    return read


class LogSpend:
    """What each run spent on models by the store's whole log (the ``llm`` field of every
    ``CycleCompleted``), read on from where the last call stopped: a swarm's budget counts
    every node's and every restart's spend, so the swarm as a whole stays within it."""

    def __init__(self, store: GenomeStore) -> None:
        self._store = store
        self._next = 1
        self._by_run: dict[str, Spend] = {}

    def __call__(self, run_id: str) -> Spend:
        """The spend of every run but ``run_id`` (whose own spend its session counts)."""
        for entry in self._store.log(start=self._next):
            self._next = entry.seq + 1
            if entry.type == "CycleCompleted" and entry.data.get("llm"):
                usage = from_log(entry.data["llm"])
                self._by_run[usage.run_id] = combined(
                    self._by_run.get(usage.run_id, Spend()), usage.spend
                )
        return combined(*(spend for run, spend in self._by_run.items() if run != run_id))


def use_model(
    supervisor: Supervisor, llm: LLMSession, store: GenomeStore, *, swarm: bool = False
) -> None:
    """Replace the node's offline generator by one that also asks ``llm`` (``--llm FILE``,
    or cluster.yml's ``llm:`` section on a swarm node, ``swarm``: then the budget counts
    the whole log's spend, not this run's alone)."""
    for ref in supervisor.refs("generator"):
        ref.stop()
    history, spent = history_from_store(store), spent_from_store(store)
    elsewhere = LogSpend(store) if swarm else None
    supervisor.start("generator", lambda: Generator.start(llm, history, spent, elsewhere))
