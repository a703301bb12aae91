"""Coordinator: drives evolution cycles through the actors and records every decision.

It is the node's conductor, not an actor: it runs in the caller's thread and waits on
the actors' futures (an actor never waits on its own).  Each cycle ends in ONE store
transaction holding every candidate evaluated, the adoption if any, and the cycle
number, so a node killed mid-cycle loses only that cycle's unrecorded work and resumes
at the same cycle.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from actors.cycle_records import (
    CycleResult,
    Offerer,
    Progress,
    Recorder,
    RunSummary,
    _quiet,
    store_recorder,
)
from actors.messages import (
    Analyze,
    CheckHeldOut,
    Generate,
    Generated,
    HeldOutResult,
    Incubate,
    Judge,
    PlanCycle,
)
from actors.supervisor import Supervisor
from actors.tuning import Tuner
from actors.verdicts import verdicts, winners
from events.projections import evaluated_on
from events.records import Adoption, CandidateRecord
from events.store import GenomeStore
from evolution.cascade import short_pays, without_short
from evolution.compose import compose
from evolution.errors import ConfigError, TarsError
from evolution.generate import Candidate
from evolution.manifest import HoldRules, Manifest, parse_manifest
from evolution.memory import SearchMemory
from evolution.planner import PLANNERS, SETTLED, Outcomes, Plan
from evolution.policy import Decision, Evidence, Policy
from evolution.tree import short
from runtime.incubation import IncubationReport


class Coordinator:
    """Runs cycles for one genome on one node."""

    def __init__(
        self,
        store: GenomeStore,
        supervisor: Supervisor,
        genome: str,
        node: str,
        *,
        policy: Policy | None = None,
        rules: HoldRules | None = None,
        candidates_per_cycle: int = 4,
        progress: Progress = _quiet,
        recorder: Recorder | None = None,
        offer: Offerer | None = None,
        held_out: bool = False,
        planner: str = "learning",
        compose: bool = True,
    ) -> None:
        if planner not in PLANNERS:
            raise ConfigError(
                f"unknown planner {planner!r}",
                hint=f"use one of {', '.join(PLANNERS)} (docs/planner.md, 'Switches')",
            )
        #: how cycles are planned (evolution.planner.PLANNERS) and whether a cycle's
        #: winners are composed: switches for the benchmarks that measure what each is worth
        self.planner, self.composition = planner, compose
        self.store = store
        #: run the manifest's held-out tests on every candidate the governor would adopt or
        #: hold, before recording: a single node has no voters to run them
        self.held_out = held_out
        self.offer = offer
        self.recorder = recorder or store_recorder(store)
        self.supervisor = supervisor
        self.genome = genome
        self.node = node
        self.candidates_per_cycle = candidates_per_cycle
        self.progress = progress
        head = store.head(genome)
        self.manifest: Manifest = parse_manifest(head.manifest_text, f"{genome}/genome.toml")
        fitness = self.manifest.fitness
        self.policy = (
            policy or Policy(threshold=fitness.threshold, confidence=fitness.confidence)
        ).with_rules(rules)  # cluster.yml's hold rules; the manifest's [policy] still overrides
        # Built once from the log, then kept up to date in memory: per-cycle cost stays flat as history grows.
        entries = list(store.log(genome=genome))
        rows = [e.data for e in entries if e.type == "CandidateEvaluated"]
        self.memory = SearchMemory.from_log(rows, self._tree_of)
        # Without the learning planner the bandit keeps its counts only (no rejected sites).
        self.outcomes = self.memory.outcomes if planner == "learning" else Outcomes.from_log(rows)
        self._evaluated: dict[str, set[str]] = evaluated_on(entries)
        self.tuner = Tuner(self.manifest)
        #: narrows each cycle's plans (a `.tars` campaign's `mutators` and `functions`)
        self.plan_filter: Callable[[list[Plan]], list[Plan]] | None = None
        #: candidates of this run that reached the short count, and that passed it: the
        #: stage is dropped once most pass (``evolution.cascade.short_pays``)
        self.short_seen = [0, 0]

    def run(self, cycles: int, seed: int) -> RunSummary:
        """Run until ``cycles`` cycles are recorded for the genome (resuming a killed run)."""
        head = self.store.head(self.genome)
        summary = RunSummary(self.genome, head.version, head.version)
        while head.cycles_completed < cycles:
            result = self.cycle(head.cycles_completed + 1, seed)
            summary.cycles.append(result)
            head = self.store.head(self.genome)
            if result.stopped:
                summary.stopped = result.stopped
                break
        summary.head = head.version
        return summary

    def cycle(self, cycle: int, seed: int) -> CycleResult:
        started = time.perf_counter()
        head = self.store.head(self.genome)
        tree, version, manifest = head.tree, head.version, self.manifest
        self.progress("analyze", {"cycle": cycle, "version": short(version)})
        found = self.supervisor.ask("analyzer", Analyze(version, tree, manifest))
        learning = self.planner == "learning"
        opportunities, exhausted = (
            self.memory.prepare(
                found,
                manifest.fitness.threshold,
                manifest.genome.sources,
                version,
                self.composition,
            )  # fmt: skip
            if learning
            else (list(found), None)
        )
        tuning = bool(manifest.tunable) and (not learning or self.memory.worth_tuning())
        if exhausted and not tuning:
            return self._exhausted(cycle, seed, version, exhausted, started)
        # Candidates already judged on this version are skipped (and their slots go to the
        # next plans): a verdict stands until the head moves.
        done = self._evaluated.get(version, set())
        plans = self._plan(
            PlanCycle(version, tree, manifest, opportunities, self.outcomes, seed, cycle,
                      self.candidates_per_cycle + len(done), self.planner)
        )  # fmt: skip
        self.progress(
            "generate", {"cycle": cycle, "plans": len(plans), "opportunities": len(opportunities)}
        )
        generated: Generated = self.supervisor.ask("generator", Generate(version, tree, plans))
        fresh = _fresh(generated.candidates, done)
        novel = self.memory.novel(fresh, version, tree) if learning else fresh
        candidates = novel[: self.candidates_per_cycle]
        if len(candidates) < self.candidates_per_cycle and tuning:
            candidates += self.tuner.candidates(
                tree, version, seed, cycle, self.candidates_per_cycle - len(candidates)
            )
        self.progress("incubate", {"cycle": cycle, "candidates": len(candidates)})
        reports, judged = self._prove(tree, version, candidates, seed)
        composed = (
            compose(tree, version, self.memory.mergeable(version, winners(candidates, judged)))
            if self.composition
            else None
        )
        if composed is not None and composed.id not in done:
            self.progress("incubate", {"cycle": cycle, "candidates": 1, "composed": True})
            more_reports, more_judged = self._prove(tree, version, [composed], seed)
            candidates, reports = [*candidates, composed], reports + more_reports
            judged = judged + more_judged
        predicted = _predictions(plans, generated.candidates)
        records, adoption, held = verdicts(
            candidates, reports, judged, version, tree, predicted, manifest.fitness
        )
        became_head = self.recorder(self.genome, self.node, cycle, seed, records, adoption,
                                    held, generated.llm)  # fmt: skip
        self._evaluated.setdefault(version, set()).update(c.id for c in candidates)
        if not became_head:
            adoption = None
        self._learn(version, tree, records, adoption)
        overhead = (
            sum(r.overhead_seconds for r in reports) / len(reports) * 1000 if reports else 0.0
        )
        result = CycleResult(
            cycle,
            len(candidates),
            adoption.version if adoption else None,
            len(held),
            overhead,
            wall_seconds=time.perf_counter() - started,
            child_seconds=sum(r.child_seconds for r in reports),
        )
        self.progress(
            "cycle", {"cycle": cycle, "result": result, "adoption": adoption, "records": records}
        )
        return result

    def _plan(self, message: PlanCycle) -> list[Plan]:
        """The planner's plans for the cycle, narrowed by :attr:`plan_filter` when one is set."""
        plans: list[Plan] = self.supervisor.ask("planner", message)
        return self.plan_filter(plans) if self.plan_filter is not None else plans

    def _prove(
        self, tree: dict[str, str], version: str, candidates: list[Candidate], seed: int
    ) -> tuple[list[IncubationReport], list[tuple[Decision, Evidence]]]:
        """Incubate ``candidates`` (offered to the peers first, with spread on), then judge them."""
        if not candidates:
            return [], []
        manifest = self.manifest
        offer = self.offer(self.genome, version, candidates) if self.offer else None
        rounds = manifest.fitness.rounds
        proving = manifest if short_pays(*self.short_seen) else without_short(manifest)
        reports: list[IncubationReport] = self.supervisor.ask_all(
            "incubator", [Incubate(proving, tree, c, rounds, offer) for c in candidates]
        )
        for report in reports:
            if "stage:short" in report.extra:
                self.short_seen[0] += 1
                self.short_seen[1] += report.failure != "short"
        judged: list[tuple[Decision, Evidence]] = self.supervisor.ask(
            "governor", Judge(manifest, tree, candidates, reports, self.policy, seed)
        )
        if self.held_out and manifest.commands.held_out is not None:
            judged = self._held_out(tree, candidates, judged)
        return reports, judged

    def _held_out(
        self,
        tree: dict[str, str],
        candidates: list[Candidate],
        judged: list[tuple[Decision, Evidence]],
    ) -> list[tuple[Decision, Evidence]]:
        """The governor's verdicts, with every would-be adoption or hold that fails the
        held-out tests turned into a rejection naming them.

        The candidate was proven without them (the incubator's sandbox never holds the
        held-out files) and no model saw them; they run here, on the full tree, only
        after the verdict, as a swarm's voters run them before voting yes.
        """
        out: list[tuple[Decision, Evidence]] = []
        for candidate, (decision, evidence) in zip(candidates, judged, strict=True):
            if decision.verdict in ("adopt", "hold"):
                result: HeldOutResult = self.supervisor.ask(
                    "validator", CheckHeldOut(self.manifest, tree, candidate.patch)
                )
                if result.passed is False:
                    reasons = (f"held-out tests fail: {result.detail}", *decision.reasons)
                    decision = Decision("reject", reasons)
            out.append((decision, evidence))
        return out

    def _learn(
        self,
        version: str,
        tree: dict[str, str],
        records: list[CandidateRecord],
        adoption: Adoption | None,
    ) -> None:
        """Feed a cycle's verdicts to the search memory, the bandit and the parameter search.

        The predictions come from the records, as a node rebuilding its memory from the
        log reads them (``CandidateRecord.expected_gain``).
        """
        if self.planner == "learning":
            self.memory.learn(
                version,
                tree,
                [(r.mutator, r.kind, r.patch, r.ratio, r.verdict in SETTLED) for r in records],
                {r.patch: r.expected_gain for r in records if r.expected_gain is not None},
            )
        for record in records:
            self.tuner.measured(record.candidate, record.ratio)
            # The learning planner counts every candidate that passed as a win, as its log
            # replay (Outcomes.from_log) does: a winner merged into an adopted composition,
            # or beaten by a better one, is not a failure of its arm.
            won = self.planner == "learning" or (
                adoption is not None and adoption.patch == record.patch
            )
            self.outcomes.record(record.mutator, record.kind, record.verdict == "adopt" and won)

    def _exhausted(
        self, cycle: int, seed: int, version: str, reason: str, started: float
    ) -> CycleResult:
        """A cycle with nothing worth a candidate: recorded empty (a resumed run moves on), with why."""
        self.recorder(self.genome, self.node, cycle, seed, [], None, [])
        result = CycleResult(
            cycle, 0, None, 0, 0.0, wall_seconds=time.perf_counter() - started, stopped=reason
        )
        self.progress("cycle", {"cycle": cycle, "result": result, "adoption": None, "records": []})
        return result

    def _tree_of(self, version: str) -> dict[str, str] | None:
        """A version's tree for the search memory (None if the store cannot build it)."""
        cache = self.__dict__.setdefault("_trees", {})
        if version not in cache:
            try:
                cache[version] = self.store.materialise(self.genome, version)
            except TarsError:
                cache[version] = None
        return cache[version]


def _predictions(plans: Sequence[Plan], candidates: Sequence[Candidate]) -> dict[str, float]:
    """Patch → the static gain predicted for the opportunity it came from (the calibration's input)."""
    by_site = {
        (p.mutator, p.opportunity.file, p.opportunity.function, p.opportunity.line): float(
            getattr(p.opportunity, "predicted_gain", 0.0) or p.opportunity.expected_gain
        )
        for p in plans
    }
    out: dict[str, float] = {}
    for c in candidates:
        gain = by_site.get((c.mutator, c.file, c.function, c.line))
        if gain is not None:
            out[c.patch] = gain
    return out


def _fresh(candidates: Sequence[Candidate], done: set[str]) -> list[Candidate]:
    """Candidates not judged before on this version, each patch once, in plan order."""
    out: list[Candidate] = []
    seen = set(done)
    for candidate in candidates:
        if candidate.id not in seen:
            seen.add(candidate.id)
            out.append(candidate)
    return out
