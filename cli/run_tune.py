"""`improve_self = true`: the script's `tune` parameters evolved, the script kept as a genome.

The script is a genome in the log, ``script-<file stem>``: its tree is the script's text,
its metric the campaign's gain per cycle (maximised).  Each trial (:func:`evolution.lang.
tune.trials`: one parameter moved to a neighbour value) runs the campaign with those
values on a scratch store of its own, from the genome's registration, with the same seed,
so every trial starts from the same place and only the values differ; the gain per cycle
it reached is its fitness.  The current values are proven the same way first.  All the
trials are then written to the real log in one transaction, as the script genome's
``CandidateEvaluated`` records (the patch: the diff of the ``tune`` lines; the ratio:
the trial's gain over the current values'), with the best adopted as the script's next
version when it beats the current one: ``tars log lineage`` shows it, ``tars rollback
--genome script-<stem>`` undoes it, and ``--write`` also writes it to the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from cli.run_campaign import Campaign, Reached
from evolution.lang import ast as A
from evolution.lang.checker import Checked
from evolution.lang.eval import Interpreter
from evolution.lang.values import Rec
from runtime.lang.host import RealHost

#: trials per run besides the current values (each is one campaign run)
TRIALS = 2

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

Values = dict[str, int | float | str | bool]


def _trial(
    checked: Checked, host: RealHost, decl: A.EvolveDecl, values: Values, where: Path, weak: bool
) -> Reached:
    console = Console(quiet=True)
    trial_host = RealHost(host.text, host.base, host.table, lambda _: None)
    interp = Interpreter(checked, trial_host, tunes=dict(values))
    interp.start()
    campaign = Campaign(interp, trial_host, decl, console)
    trial_host.on_deploy = campaign.deploy
    return campaign.run(str(where / "store.db"), where, weak)


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
) -> str | None:
    """Prove the current values and the trials; record them; the new text if one won."""
    from evolution.lang.tune import rewrite, trials

    assert checked.program is not None and checked.info is not None
    interp = Interpreter(checked, host)
    current: Values = {t.name: interp.glob(t.name, decl.pos) for t in checked.info.tunes}
    tries = trials(checked.info.tunes, current, seed, TRIALS)
    results: list[tuple[Values, float]] = []
    for number, values in enumerate([current, *tries]):
        shown = ", ".join(f"{k}={v}" for k, v in values.items())
        with console.status(f"tune: proving {shown} ({number + 1} of {len(tries) + 1})…"):
            reached = _trial(
                checked, host, decl, values, workdir / "tune" / f"trial-{number}", weak
            )
        console.print(
            f"tune: {shown}: gain per cycle {reached.gain_per_cycle:.4f}", highlight=False
        )
        results.append((values, reached.gain_per_cycle))
    base = results[0][1]
    best_values, best = max(results[1:], key=lambda r: r[1], default=(current, base))
    need = threshold(host, decl, interp)
    text = rewrite(checked.program, best_values) if best >= base * need else None
    _record(checked, script, store, results, text, best)
    if text is None:
        console.print(f"tune: the current values stay (no trial did {need:g}× better)")
        return None
    if write:
        script.write_text(text, encoding="utf-8")
        console.print(f"tune: wrote the improved script to {script}")
    return text


def _record(
    checked: Checked,
    script: Path,
    store: str,
    results: list[tuple[Values, float]],
    text: str | None,
    best: float,
) -> None:
    from cli.common import store_url
    from events.records import Adoption, CandidateRecord
    from events.store import GenomeStore
    from evolution.generate import candidate_id
    from evolution.lang.tune import rewrite
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
            handle.register(name, manifest, tree, results[0][1], "tars-run")
            cycle = 1
        parent = version_id(tree)
        records, adoption = [], None
        base = results[0][1]
        for values, gain in results[1:]:
            new = {script.name: rewrite(checked.program, values)}
            patch = make_patch(tree, new)
            if not patch:
                continue
            won = text is not None and new[script.name] == text
            records.append(
                CandidateRecord(
                    candidate_id(parent, patch), parent, patch, "tune", "tune",
                    "adopt" if won else "reject",
                    [f"gain per cycle {gain:.4f} against {base:.4f} with the current values"],
                    gain / base if base else None, None, None, True,
                )
            )  # fmt: skip
            if won:
                adoption = Adoption(version_id(new), parent, patch, "tune", "tune", base, best,
                                    best / base if base else None, None, None)  # fmt: skip
        handle.record_cycle(name, "tars-run", evaluated=records, adopted=adoption, cycle=cycle)


def threshold(host: RealHost, decl: A.EvolveDecl, interp: Interpreter) -> float:
    """How much better a trial's gain per cycle must be to replace the current values: the
    campaign's ``fitness { threshold }``, else the genome's own (one measurement per trial:
    a smaller difference is the sandbox's noise as likely as the values)."""
    from cli.run_campaign import settings
    from runtime.genome_files import load_genome
    from runtime.lang.host import genome_record

    given = settings(interp, decl.settings).get("fitness", {}).get("threshold")
    if given is not None:
        return float(given)
    genome = interp.decls[decl.genome]
    assert isinstance(genome, A.GenomeDecl)
    manifest, _ = load_genome(Path(genome_record(genome, host.base, None).get("path")))
    return float(manifest.fitness.threshold)


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
