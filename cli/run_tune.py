"""`improve_self = true`: the script's `tune` parameters evolved, the script kept as a genome.

The script is a genome in the log, ``script-<file stem>``: its tree is the script's text,
its metric the campaign's gain per cycle (maximised).  Each trial (:func:`evolution.lang.
tune.trials`: one parameter moved to a neighbour value) and the current values are
measured over the same repeats (:func:`evolution.lang.tune.repeat_seeds`: the campaign's
seed, then the next ones), repeat by repeat, so each repeat's figures are taken side by
side: one measurement is the campaign run with those values and that seed on a scratch
store of its own, from the genome's registration, and the gain per cycle it reached.  A
trial is proven when the interval of its paired gain lies above the threshold
(:func:`evolution.lang.tune.prove`); every trial, proven or not, is then written to the
real log in one transaction as the script genome's ``CandidateEvaluated`` (the patch: the
diff of the ``tune`` lines; the ratio and its interval; every repeat's figures and seed),
with the proven trial of the highest low bound adopted as the script's next version:
``tars log lineage`` shows it, ``tars rollback --genome script-<stem>`` undoes it, and
``--write`` also writes it to the file.

The objective is the campaign's by default; :func:`improve` takes another (the user's side
of the search, as a model is: a test scripts it), and nothing else changes.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from itertools import count
from pathlib import Path
from typing import Any, NamedTuple

from rich.console import Console
from rich.progress import Progress

from cli.run_campaign import Campaign
from evolution.errors import ConfigError
from evolution.lang import ast as A
from evolution.lang.checker import Checked
from evolution.lang.eval import Interpreter
from evolution.lang.tune import Proof, Value
from evolution.lang.values import Rec
from runtime.lang.host import RealHost

#: trials per run besides the current values, and repeats per value set (`tuning { … }`)
TRIALS, REPEATS = 2, 3

MANIFEST = """[genome]
name = "{name}"
description = "the tune parameters of the TARS script {file} (tars run, improve_self)"
sources = ["*.tars"]

[commands]
test = ["true"]
bench = ["true"]

[fitness]
metric = "gain_per_cycle"
direction = "maximize"
"""

Values = dict[str, Value]
#: one measurement of the tune objective: the values and the repeat's seed -> a positive figure
Objective = Callable[[Values, int], float]


class Tuning(NamedTuple):
    """What the search does: how many trials, repeats, and the bar a trial must clear."""

    trials: int
    repeats: int
    threshold: float
    confidence: float


def campaign_objective(
    checked: Checked, host: RealHost, decl: A.EvolveDecl, workdir: Path, weak: bool
) -> Objective:
    """The default objective: the campaign run with the values and the seed on a fresh
    scratch store (``workdir/tune/run-N``, emptied first: every run starts from the
    genome's registration), its gain per cycle."""
    runs = count()

    def measure(values: Values, seed: int) -> float:
        where = workdir / "tune" / f"run-{next(runs)}"
        if where.exists():
            shutil.rmtree(where)
        trial_host = RealHost(host.text, host.base, host.table, lambda _: None)
        interp = Interpreter(checked, trial_host, tunes=dict(values))
        interp.start()
        campaign = Campaign(interp, trial_host, decl, Console(quiet=True))
        campaign.set["seed"] = seed
        trial_host.on_deploy = campaign.deploy
        return campaign.run(str(where / "store.db"), where, weak).gain_per_cycle

    return measure


def improve(
    checked: Checked,
    host: RealHost,
    decl: A.EvolveDecl,
    script: Path,
    store: str,
    workdir: Path,
    weak: bool,
    write: bool,
    console: Console,
    seed: int,
    objective: Objective | None = None,
) -> str | None:
    """Measure the current values and the trials, prove each trial; record them all; the
    new text if one was proven."""
    from evolution.lang.tune import best, repeat_seeds, rewrite, trials

    assert checked.program is not None and checked.info is not None
    interp = Interpreter(checked, host)
    current: Values = {t.name: interp.glob(t.name, decl.pos) for t in checked.info.tunes}
    plan = tuning(host, decl, interp)
    seeds = repeat_seeds(seed, plan.repeats)
    sets = [current, *trials(checked.info.tunes, current, seed, plan.trials)]
    measure = objective or campaign_objective(checked, host, decl, workdir, weak)
    figures = _measure(sets, seeds, measure, console)
    proofs = _prove(sets, seeds, figures, plan, seed, console)
    winner = best(proofs)
    text = rewrite(checked.program, winner.values) if winner is not None else None
    _record(checked, script, store, figures[0], proofs, winner)
    if text is None:
        console.print(
            f"tune: the current values stay (no trial's {plan.confidence:.0%} interval lies "
            f"above {plan.threshold:g}×)",
            highlight=False,
        )
        return None
    if write:
        script.write_text(text, encoding="utf-8")
        console.print(f"tune: wrote the improved script to {script}")
    return text


def _shown(values: Values) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


def _measure(
    sets: list[Values], seeds: tuple[int, ...], measure: Objective, console: Console
) -> list[list[float]]:
    """Each value set's figure per seed, repeat by repeat (all sets on one seed, then the
    next), so the figures of a seed are taken side by side, as the incubator's A/B pairs."""
    figures: list[list[float]] = [[] for _ in sets]
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("tune: proving", total=len(sets) * len(seeds))
        for repeat, seed in enumerate(seeds):
            for number, values in enumerate(sets):
                progress.update(task, description=f"tune: {_shown(values)}, seed {seed}")
                figures[number].append(measure(values, seed))
                progress.advance(task)
                console.print(
                    f"tune: repeat {repeat + 1} of {len(seeds)} (seed {seed}): "
                    f"{_shown(values)}: gain per cycle {figures[number][-1]:.4f}",
                    highlight=False,
                )
    return figures


def _prove(
    sets: list[Values],
    seeds: tuple[int, ...],
    figures: list[list[float]],
    plan: Tuning,
    seed: int,
    console: Console,
) -> list[Proof]:
    """Each trial against the current values, paired by seed, its verdict printed."""
    from evolution.lang.tune import prove

    proofs = []
    for values, series in zip(sets[1:], figures[1:], strict=True):
        # the bootstrap's draws from the run's seed and the values: a rerun decides alike
        rng = random.Random(f"tune:{seed}:{sorted(values.items())}")
        proof = prove(values, seeds, figures[0], series, threshold=plan.threshold,
                      confidence=plan.confidence, rng=rng)  # fmt: skip
        console.print(f"tune: {_shown(values)}: {proof.reason}", highlight=False)
        proofs.append(proof)
    return proofs


def _record(
    checked: Checked,
    script: Path,
    store: str,
    base: list[float],
    proofs: list[Proof],
    winner: Proof | None,
) -> None:
    """Every trial as the script genome's ``CandidateEvaluated``, the winner as its next
    version, in one transaction (registering the script first if the log has not got it)."""
    from cli.common import store_url
    from events.records import Adoption, CandidateRecord
    from events.store import GenomeStore
    from evolution.generate import candidate_id
    from evolution.lang.tune import geometric_mean, rewrite
    from evolution.patch import make_patch
    from evolution.tree import version_id

    assert checked.program is not None
    name = script_genome(script)
    with GenomeStore.open(store_url(store, must_exist=False)) as handle:
        try:
            head = handle.head(name)
            tree, cycle = head.tree, head.cycles_completed + 1
        except Exception:  # not registered yet: register the script as it is
            tree = {script.name: checked.program.text}
            manifest = MANIFEST.format(name=name, file=script.name)
            handle.register(name, manifest, tree, geometric_mean(base), "tars-run")
            cycle = 1
        parent = version_id(tree)
        records, adoption = [], None
        for proof in proofs:
            new = {script.name: rewrite(checked.program, proof.values)}
            patch = make_patch(tree, new)
            if not patch:
                continue
            c = proof.comparison
            won = proof is winner
            records.append(
                CandidateRecord(
                    candidate_id(parent, patch), parent, patch, "tune", "tune",
                    "adopt" if won else "reject", [proof.reason], c.ratio, c.low, c.high, True,
                    figures=proof.log_figures(),
                )
            )  # fmt: skip
            if won:
                before, after = geometric_mean(proof.base), geometric_mean(proof.figures)
                adoption = Adoption(version_id(new), parent, patch, "tune", "tune", before, after,
                                    c.ratio, c.low, c.high)  # fmt: skip
        handle.record_cycle(name, "tars-run", evaluated=records, adopted=adoption, cycle=cycle)


def tuning(host: RealHost, decl: A.EvolveDecl, interp: Interpreter) -> Tuning:
    """The search's settings: ``tuning { repeats trials }`` (3 and 2 by default), and the bar:
    the campaign's ``fitness { threshold confidence }``, else the genome's own."""
    from cli.run_campaign import settings
    from runtime.genome_files import load_genome
    from runtime.lang.host import genome_record

    given = settings(interp, decl.settings)
    fitness, asked = given.get("fitness", {}), given.get("tuning", {})
    genome = interp.decls[decl.genome]
    assert isinstance(genome, A.GenomeDecl)
    manifest, _ = load_genome(Path(genome_record(genome, host.base, None).get("path")))
    plan = Tuning(
        int(asked.get("trials", TRIALS)),
        int(asked.get("repeats", REPEATS)),
        float(fitness.get("threshold", manifest.fitness.threshold)),
        float(fitness.get("confidence", manifest.fitness.confidence)),
    )
    if plan.trials < 1 or not 0.0 < plan.confidence < 1.0:
        raise ConfigError(
            f"tuning: trials = {plan.trials}, confidence = {plan.confidence}",
            hint="trials is at least 1 and the confidence between 0 and 1 (e.g. 0.95)",
        )
    return plan


def script_genome(script: Path) -> str:
    """The name of the script's own genome in the log (``script-<file stem>``)."""
    return f"script-{script.stem}".replace("_", "-")


def script_history(script: Path, store: str) -> list[Rec]:
    """The log's verdicts on the script's tune trials, oldest first (none before its first)."""
    from cli.common import store_url
    from cli.run_campaign import verdict_of
    from events.store import GenomeStore

    url = store_url(store, must_exist=False)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return []
    name = script_genome(script)
    with GenomeStore.open(url) as handle:
        if name not in handle.genomes():
            return []
        entries = [e for e in handle.log(genome=name) if e.type == "CandidateEvaluated"]
        return [verdict_of(e.data, name) for e in entries]


def any_improving(program: A.Program, interp: Interpreter) -> list[tuple[A.EvolveDecl, Any]]:
    """The campaigns that ask to improve the script (``improve_self = true``)."""
    out = []
    for decl in program.decls:
        if isinstance(decl, A.EvolveDecl):
            for item in decl.settings:
                wanted = isinstance(item, A.Setting) and item.name == "improve_self"
                if wanted and interp.expr(item.value, {}) is True:  # type: ignore[union-attr]
                    out.append((decl, item))
    return out
