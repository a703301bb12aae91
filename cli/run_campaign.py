"""One `evolve GENOME { ... }` campaign of a script, run on a node as `tars evolve run` runs it.

The same library as the CLI: a :class:`node.Node` on the store, ``register`` then the
coordinator's cycles, ``use_model`` for ``llm``; the script adds its settings (cycles,
candidates, seed, the fitness threshold and confidence as the policy), its prompt block as
the generator's instructions, and its handlers: after each cycle the cycle's records
become ``Candidate`` and ``Verdict`` values and the ``on candidate`` / ``on verdict``
handlers run, then ``on done`` with the genome.  A cycle is written to the log whole by
the coordinator's recorder (one transaction) before any handler runs, so a handler that
fails stops the script with every recorded cycle whole and nothing half-written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from rich.console import Console

from evolution.errors import ConfigError, TarsError
from evolution.lang import ast as A
from evolution.lang.eval import Fn, Interpreter
from evolution.lang.values import Rec, rec
from evolution.rollout_plan import RolloutPlan, make_plan
from runtime.lang.host import RealHost, genome_record

if TYPE_CHECKING:
    from events.records import CandidateRecord
    from evolution.manifest import Manifest
    from evolution.planner import Plan
    from evolution.policy import Policy
    from node import Node


def settings(interp: Interpreter, items: tuple[A.SettingItem, ...]) -> dict[str, Any]:
    """A campaign's settings evaluated (groups as dicts), handlers left out."""
    out: dict[str, Any] = {}
    for item in items:
        if isinstance(item, A.Setting):
            out[item.name] = interp.expr(item.value, {})
        elif isinstance(item, A.SettingGroup):
            out[item.name] = settings(interp, item.settings)
    return out


class Reached(NamedTuple):
    """What a campaign's run did: the genome's fitness before and after, over how many cycles."""

    genome: str
    before: float | None
    after: float | None
    cycles: int
    direction: str

    @property
    def gain_per_cycle(self) -> float:
        """The gain (better than 1 when the fitness improved) per cycle: the tune's objective."""
        if not self.before or not self.after or self.cycles <= 0:
            return 1.0
        gain = (
            self.before / self.after if self.direction == "minimize" else self.after / self.before
        )
        return float(gain ** (1.0 / self.cycles))


def with_input(folder: Path, records: Any, workdir: Path) -> Path:
    """A copy of the genome folder holding the source's records as ``input.jsonl`` (one
    JSON record a line, validated when the source was read): part of the registered tree,
    so every candidate's jail has it, and what a benchmark that looks for it reads
    (logstats' bench.py: ``input.jsonl``, or the file ``TARS_BENCH_INPUT`` names)."""
    import json
    import shutil

    from evolution.lang.values import plain

    copy = workdir / "input" / folder.name
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("__pycache__", ".tars"))
    rows = records if isinstance(records, list) else [records]
    text = "".join(json.dumps(plain(r), sort_keys=True) + "\n" for r in rows)
    (copy / "input.jsonl").write_text(text, encoding="utf-8")
    return copy


def _verdict(
    r: CandidateRecord,
    genome: str,
    head: str | None,
    fitness: float | None = None,
    function: str = "",
) -> tuple[Rec, Rec]:
    lines = sum(1 for line in r.patch.splitlines() if line.startswith(("+", "-")))
    files = sorted({line[6:] for line in r.patch.splitlines() if line.startswith("+++ b/")})
    patch = rec("Patch", diff=r.patch, files=files, lines=lines)
    candidate = rec("Candidate", id=r.candidate, genome=genome, parent=r.parent,
                    mutator=r.mutator, function=function, patch=patch)  # fmt: skip
    version = (
        rec("Version", id=head, parent=r.parent, fitness=fitness, message=r.mutator)
        if head is not None
        else None
    )
    verdict = rec(
        "Verdict",
        candidate=candidate,
        accepted=r.verdict == "adopt",
        held=r.verdict == "hold",
        gain=r.ratio or 0.0,
        low=r.low or 0.0,
        high=r.high or 0.0,
        reason="; ".join(r.reasons),
        version=version,
    )
    return candidate, verdict


def verdict_of(data: dict[str, Any], genome: str) -> Rec:
    """A ``CandidateEvaluated`` event's data as a ``Verdict`` (``history``, ``script.history``)."""
    from events.records import CandidateRecord

    fields: dict[str, Any] = {k: data.get(k) for k in CandidateRecord.__dataclass_fields__}
    fields["figures"] = fields["figures"] or {}
    fields["reasons"] = fields["reasons"] or []
    return _verdict(CandidateRecord(**fields), genome, None)[1]


class Campaign:
    """Runs one campaign: its node, its model, its cycles, its handlers."""

    def __init__(
        self, interp: Interpreter, host: RealHost, decl: A.EvolveDecl, console: Console
    ) -> None:
        self.interp, self.host, self.decl, self.console = interp, host, decl, console
        self.set = settings(interp, decl.settings)
        self.handlers = {h.event: h for h in decl.settings if isinstance(h, A.Handler)}
        genome = interp.decls[decl.genome]
        assert isinstance(genome, A.GenomeDecl)
        self.genome_decl = genome
        self.version: str | None = None
        self.deploys: list[str] = []

    def run(self, store: str, workdir: Path, weak: bool) -> Reached:
        """Register the genome if new, run the cycles, call the handlers; what it reached."""
        from cli.progress import CycleProgress

        cycles = int(self.set.get("cycles", 5))
        seed = int(self.set.get("seed", 7))
        fitness = self.set.get("fitness", {})
        with ExitStack() as stack:
            node = stack.enter_context(self._node(store, workdir, weak))
            node.install_signal_handlers()  # SIGTERM stops cleanly, as `tars evolve run`
            self.console.print(
                f"candidate isolation: {node.isolation}", highlight=False, markup=False
            )
            stack.enter_context(self._model(node))
            folder = Path(genome_record(self.genome_decl, self.host.base, None).get("path"))
            if "input" in self.set:
                folder = with_input(folder, self.set["input"], workdir)
            name, _ = node.register(folder)
            self.store = node.store
            self.host.genomes = lambda d: self._genome(node, d)
            self.host.builtins = lambda n, g: self._builtin(node, n, g)
            head = node.store.head(name)
            policy = self._policy(head.manifest_text)
            start, before = head.cycles_completed, head.fitness
            with CycleProgress(self.console, start + cycles, start, label=name) as bar:

                def progress(stage: str, info: dict[str, Any]) -> None:
                    bar(stage, info)
                    if stage == "cycle":
                        self._cycle(name, info)

                coordinator = node.coordinator(name, progress=progress, policy=policy)
                coordinator.plan_filter = self._plan_filter()
                coordinator.manifest = self._limited(coordinator.manifest)
                for number in range(start + 1, start + cycles + 1):
                    result = coordinator.cycle(number, seed)
                    if result.stopped or self.host.stopped:
                        break
            end = node.store.head(name)
            if "done" in self.handlers:
                self.interp.handler(self.handlers["done"], self._genome(node, self.genome_decl))
            direction = str(fitness.get("direction", self.genome_decl_direction(head)))
            return Reached(name, before, end.fitness, end.cycles_completed - start, direction)

    def _plan_filter(self) -> Callable[[list[Plan]], list[Plan]] | None:
        """``mutators`` (the offline ones; ``llm`` says whether the model is asked) and
        ``functions`` (``module.function``, ``file:function`` or a bare name) narrow the plans."""
        mutators = [str(m) for m in self.set.get("mutators", [])]
        offline = [m for m in mutators if m != "llm"]
        functions = {str(f) for f in self.set.get("functions", [])}
        if not mutators and not functions:
            return None

        def named(plan: Plan) -> bool:
            opp = plan.opportunity
            module = opp.file.removesuffix(".py").replace("/", ".")
            forms = {opp.function, f"{module}.{opp.function}", f"{opp.file}:{opp.function}"}
            return not functions or bool(forms & functions)

        return lambda plans: [
            p for p in plans if (not mutators or p.mutator in offline) and named(p)
        ]

    def _limited(self, manifest: Manifest) -> Manifest:
        """``limits { wall_seconds memory_mb peak_memory_mb }`` over the manifest's, for this run:
        the sandbox's limits of each candidate run, and the peak memory's allowed growth."""
        from pydantic import ValidationError

        from evolution.manifest import FitnessLimit, Limits

        limits = self.set.get("limits", {})
        update: dict[str, Any] = {}
        try:
            sandbox = {k: limits[k] for k in ("wall_seconds", "memory_mb") if k in limits}
            if sandbox:
                update["limits"] = Limits.model_validate(
                    {**manifest.limits.model_dump(), **sandbox}
                )
            if "peak_memory_mb" in limits:
                kept = [x for x in manifest.fitness.limits if x.metric != "peak_memory_mb"]
                peak = FitnessLimit(metric="peak_memory_mb", max_change=limits["peak_memory_mb"])
                update["fitness"] = manifest.fitness.model_copy(update={"limits": [*kept, peak]})
        except ValidationError as exc:
            raise ConfigError(
                f"limits: {exc.errors()[0]['loc'][-1]}: {exc.errors()[0]['msg']}",
                hint="wall_seconds in (0, 3600], memory_mb in 32..65536, peak_memory_mb ≥ 0",
            ) from None
        return manifest.model_copy(update=update) if update else manifest

    def _policy(self, manifest_text: str) -> Policy | None:
        """The governor's policy from ``fitness { threshold confidence }`` and ``approve { … }``
        (docs/approval.md's rules; the manifest's own ``[policy]`` still has the last word)."""
        from evolution.manifest import HoldRules, parse_manifest
        from evolution.policy import Policy

        fitness, approve = self.set.get("fitness", {}), self.set.get("approve", {})
        if not approve and "threshold" not in fitness and "confidence" not in fitness:
            return None
        own = parse_manifest(manifest_text, "genome.toml").fitness
        policy = Policy(
            float(fitness.get("threshold", own.threshold)),
            float(fitness.get("confidence", own.confidence)),
        )
        names = {"max_patch_lines": "max_patch_lines", "new_imports": "approval_on_new_imports",
                 "protected": "approval_on_protected", "model": "approval_on_model",
                 "above": "approval_above"}  # fmt: skip
        return policy.with_rules(HoldRules(**{names[k]: v for k, v in approve.items()}))

    @staticmethod
    def genome_decl_direction(head: Any) -> str:
        """The genome's own direction (its manifest's), when the script does not say one."""
        from evolution.manifest import parse_manifest

        return parse_manifest(head.manifest_text, "genome.toml").fitness.direction

    @contextmanager
    def _node(self, store: str, workdir: Path, weak: bool) -> Iterator[Node]:
        from cli.common import store_url
        from node import Node, NodeConfig

        config = NodeConfig(
            "local",
            store_url(store, must_exist=False),
            workdir / "work",
            candidates_per_cycle=int(self.set.get("candidates", 4)),
            accept_weak_isolation=weak,
        )
        with Node(config) as node:
            yield node

    @contextmanager
    def _model(self, node: Node) -> Iterator[None]:
        """With ``llm``: the node's generator asks the models, with the prompt block's text."""
        mutators = self.set.get("mutators")
        if "llm" not in self.set or (mutators is not None and "llm" not in mutators):
            yield  # no model, or `mutators` leaves it out (prompt calls then have none)
            return
        from actors.generator import use_model
        from runtime.llm_session import LLMSession

        session = LLMSession.open(self.host.base / str(self.set["llm"]))
        names = [str(n) for n in self.set.get("models", [])]
        if names:  # `models`: the campaign asks only these of the file's models
            chosen = [m for m in session.config.models if m.arm in names]
            if not chosen:
                session.close()
                raise ConfigError(
                    f"none of the models {names} is in {self.set['llm']}",
                    hint=f"its models: {', '.join(m.arm for m in session.config.models)}",
                )
            session.config = session.config.model_copy(update={"models": chosen})
        limits = self.set.get("limits", {})
        budget = {k: limits[k] for k in ("budget_tokens", "max_requests") if k in limits}
        if budget:  # the run's model budget, over the file's
            session.config = session.config.model_copy(update=budget)
        before = self.host.llm, self.host.models
        self.host.llm, self.host.models = session, list(self.set.get("models", []))
        prompt = self.set.get("prompt")
        if isinstance(prompt, Fn):
            session.instructions = lambda target, code: self._instructions(prompt, target, code)
        try:
            use_model(node.supervisor, session, node.store)
            yield
        finally:
            self.console.print(session.summary(), highlight=False, soft_wrap=True)
            session.close()
            self.host.llm, self.host.models = before

    def _instructions(self, prompt: Fn, target: Any, code: str) -> str:
        hotspot = rec("Hotspot", file=target.file, function=target.function, line=target.line,
                      code=code, kind=target.kind, evidence=target.evidence, share=0.0)  # fmt: skip
        decl = prompt.decl
        return self.interp.string(decl.text, {decl.params[0].name: hotspot})  # type: ignore[union-attr]

    def _cycle(self, name: str, info: dict[str, Any]) -> None:
        adoption = info.get("adoption")
        for record in info.get("records", []):
            won = adoption is not None and adoption.patch == record.patch
            self.version = adoption.version if won and adoption is not None else None
            after = adoption.fitness_after if self.version and adoption is not None else None
            function = self._function(name, record)
            candidate, verdict = _verdict(record, name, self.version, after, function)
            if "candidate" in self.handlers:
                self.interp.handler(self.handlers["candidate"], candidate)
            if "verdict" in self.handlers:
                self.interp.handler(self.handlers["verdict"], verdict)

    def _function(self, name: str, record: CandidateRecord) -> str:
        """The functions a candidate's patch changes (``file:function``, comma-separated):
        the log keeps a candidate's parent and patch, not the function it aimed at."""
        from evolution.sites import changed_functions

        trees: dict[str, Any] = self.__dict__.setdefault("_trees", {})
        if record.parent not in trees:
            try:
                trees[record.parent] = self.store.materialise(name, record.parent)
            except TarsError:
                trees[record.parent] = {}
        changed = changed_functions(trees[record.parent], record.patch)
        return ", ".join(f"{file}:{function}" for file, function, _ in changed)

    def deploy(self, strategy: str, args: dict[str, Any], pos: A.Pos) -> None:
        """On a single node: say what would deploy (a rollout needs a swarm's service),
        after the same check of the plan a swarm makes, so a bad plan fails here too."""
        script_plan(self.host, strategy, args, pos)
        shown = ", ".join(f"{k}={v}" for k, v in args.items())
        what = self.version[:12] if self.version else "(no new version in this handler)"
        text = f"would deploy {self.decl.genome} {what} by {strategy}({shown}) (a single node has no service; a swarm's --config rolls it out)"
        self.deploys.append(text)
        self.host.say(text)

    def _genome(self, node: Node, decl: A.GenomeDecl) -> Rec:
        base = genome_record(decl, self.host.base, None)
        name = base.get("name")
        try:
            head = node.store.head(name)
        except Exception:  # not registered: the blank head
            return base
        version = rec("Version", id=head.version, parent=None, fitness=head.fitness,
                      message=f"head after {head.cycles_completed} cycles")  # fmt: skip
        return Rec("Genome", tuple((k, version if k == "head" else v) for k, v in base.fields))

    def _builtin(self, node: Node, name: str, genome: Rec) -> Any:
        """``history(g)``: the log's verdicts on the genome; ``hotspots(g)``: the analyzer's."""
        if name == "history":
            entries = node.store.log(genome=genome.get("name"))
            return [
                verdict_of(e.data, genome.get("name"))
                for e in entries
                if e.type == "CandidateEvaluated"
            ]
        from actors.messages import Analyze

        head = node.store.head(genome.get("name"))
        from evolution.manifest import parse_manifest

        manifest = parse_manifest(head.manifest_text, "genome.toml")
        found = node.supervisor.ask("analyzer", Analyze(head.version, head.tree, manifest))
        return [
            rec("Hotspot", file=o.file, function=o.function, line=o.line, code="",
                kind=o.kind, evidence=str(o.evidence), share=float(getattr(o, "share", 0.0)))
            for o in found
        ]  # fmt: skip


def script_plan(host: RealHost, strategy: str, args: dict[str, Any], pos: A.Pos) -> RolloutPlan:
    """A script's ``deploy`` arguments as a checked plan; one that does not hold (steps
    [50, 10]) is an error at the ``deploy``, on one node as on a swarm."""
    try:
        return make_plan(strategy, args.get("steps"), args.get("interval"), args.get("mirror"))
    except TarsError as exc:
        raise host.fail(
            pos, f"deploy {strategy}: {exc.message}", exc.hint or "see docs/language.md"
        ) from None
