"""Framework overhead per candidate, with 10 and with 10,000 versions of history.

Overhead is everything a cycle spends outside the genome's own processes (analysis,
planning, generation, workspaces, actor messages, statistics, the store transaction),
per candidate.  The sandbox's own cost (bwrap, cgroups, rlimits) is reported apart, as
the same commands run in the sandbox against plain ``subprocess.run`` in the same run.

The breakdown block repeats the small run with a timer around each stage (generator,
governor, planner, store, workspaces, the sandbox's own work around each child), and
``first_sight_of_a_version`` is what a new head costs once (libcst parse and scan,
generation with nothing remembered), which the cycles on an unchanged head do not pay.

Usage: ``python bench/bench_cycle.py [--quick] [--cycles N]`` from the repository root; prints JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from events.records import Adoption  # noqa: E402
from events.store import GenomeStore  # noqa: E402
from evolution.patch import make_patch  # noqa: E402
from evolution.tree import version_id  # noqa: E402
from node import Node, NodeConfig  # noqa: E402
from runtime.genome_files import load_genome  # noqa: E402
from runtime.sandbox import Sandbox, SandboxLimits  # noqa: E402

TINY = ROOT / "tests" / "data" / "tiny"


def genome_copy(work: Path) -> Path:
    """The tiny genome with a threshold nothing reaches: cycles never adopt, so every
    measured cycle runs on the same head and the profile cache is warm."""
    folder = work / "tiny"
    shutil.copytree(TINY, folder)
    manifest = folder / "genome.toml"
    manifest.write_text(manifest.read_text().replace("threshold = 1.10", "threshold = 99.0"))
    return folder


def build_history(store_url: str, folder: Path, versions: int) -> None:
    manifest, tree = load_genome(folder)
    with GenomeStore.open(store_url) as store:
        store.register(manifest.name, tree["genome.toml"], tree, 0.05, "bench")
        for i in range(1, versions):
            new = dict(tree)
            new["NOTES.md"] = f"history entry {i}\n"
            patch = make_patch(tree, new)
            store.adopt(
                manifest.name,
                Adoption(
                    version_id(new),
                    version_id(tree),
                    patch,
                    "bench",
                    "bench",
                    0.05,
                    0.05,
                    1.0,
                    1.0,
                    1.0,
                    {},
                ),
                "bench",
            )
            tree = new


class StageTimer:
    """Wall time per stage of a cycle, taken by wrapping the methods that do each stage.

    Only for the breakdown: the headline figure is measured without it.  Workspace and
    sandbox figures are the parts of the incubator that are not the children themselves.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._undo: list[tuple[object, str, object]] = []

    def _add(self, label: str, seconds: float) -> None:
        self.seconds[label] = self.seconds.get(label, 0.0) + seconds

    def wrap(self, owner: object, name: str, label: str) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self._add(label, time.perf_counter() - started)

        self._undo.append((owner, name, original))
        setattr(owner, name, timed)

    def install(self) -> StageTimer:
        import contextlib

        from actors.generator import Generator
        from actors.governor import Governor
        from actors.planner import Planner

        self.wrap(Generator, "on_generate", "generator")
        self.wrap(Governor, "on_judge", "governor")
        self.wrap(Planner, "on_plan", "planner")
        self.wrap(GenomeStore, "record_cycle", "store transaction")
        self.wrap(GenomeStore, "head", "store head")
        run, workspace = Sandbox.run, Sandbox.workspace

        def timed_run(sandbox: Sandbox, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            result = run(sandbox, *args, **kwargs)
            self._add(
                "sandbox run outside the child", time.perf_counter() - started - result.wall_seconds
            )
            return result

        @contextlib.contextmanager
        def timed_workspace(sandbox: Sandbox, tree: Any) -> Any:
            started = time.perf_counter()
            manager = workspace(sandbox, tree)
            path = manager.__enter__()
            self._add("workspaces (write + remove)", time.perf_counter() - started)
            try:
                yield path
            finally:
                started = time.perf_counter()
                manager.__exit__(None, None, None)
                self._add("workspaces (write + remove)", time.perf_counter() - started)

        self._undo += [(Sandbox, "run", run), (Sandbox, "workspace", workspace)]
        Sandbox.run = timed_run  # type: ignore[method-assign]
        Sandbox.workspace = timed_workspace  # type: ignore[method-assign,assignment]
        return self

    def remove(self) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        self._undo.clear()


def measure(versions: int, cycles: int, stages: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder = genome_copy(work)
        url = f"sqlite:///{work / 'store.db'}"
        started = time.perf_counter()
        build_history(url, folder, versions)
        built = time.perf_counter() - started
        config = NodeConfig("bench", url, work / "node", incubators=1, candidates_per_cycle=2)
        timer = StageTimer() if stages else None
        with Node(config) as node:
            coordinator = node.coordinator("tiny")
            coordinator.cycle(1, seed=1)  # warm: profiles the head once
            per_candidate: list[float] = []
            candidates = 0
            if timer is not None:
                timer.install()
            try:
                for n in range(2, cycles + 2):
                    result = coordinator.cycle(n, seed=1)
                    if result.candidates:
                        candidates += result.candidates
                        per_candidate.append(
                            (result.wall_seconds - result.child_seconds) / result.candidates * 1000
                        )
            finally:
                if timer is not None:
                    timer.remove()
        out: dict[str, Any] = {
            "versions": versions,
            "history_build_s": round(built, 2),
            "cycles": cycles,
            "overhead_ms_per_candidate_median": round(statistics.median(per_candidate), 2),
            "overhead_ms_per_candidate_range": [
                round(min(per_candidate), 2),
                round(max(per_candidate), 2),
            ],
        }
        if timer is not None and candidates:
            out["stages_ms_per_candidate"] = {
                label: round(seconds / candidates * 1000, 2)
                for label, seconds in sorted(timer.seconds.items())
            }
        return out


def first_sight() -> dict[str, Any]:
    """What a version costs the first time it is seen (after an adoption): parse + scan of
    every source file (the analyzer, besides its profiled run) and generating candidates
    from nothing remembered, on the tiny genome.  Cycles on an unchanged head pay neither."""
    import random

    from actors.generator import Generator
    from actors.messages import Generate
    from evolution.analysis import analyze
    from evolution.mutators import ALL_MUTATORS
    from evolution.mutators.cst_tools import children, index
    from evolution.planner import Outcomes, plan

    manifest, tree = load_genome(TINY)
    version = version_id(tree)
    risks = {m.name: m.risk for m in ALL_MUTATORS}
    scans, generations = [], []
    for _ in range(5):
        index.cache_clear()
        children.cache_clear()
        started = time.perf_counter()
        opportunities = analyze(tree, manifest, None)
        scans.append(time.perf_counter() - started)
        plans = plan(opportunities, Outcomes(table={}), risks=risks, rng=random.Random(1), limit=2)
        started = time.perf_counter()
        made = Generator().on_generate(Generate(version, tree, plans))
        generations.append((time.perf_counter() - started) / max(1, len(made.candidates)))
    return {
        "analysis_parse_and_scan_ms_median": round(statistics.median(scans) * 1000, 1),
        "generator_ms_per_candidate_median": round(statistics.median(generations) * 1000, 1),
    }


def sandbox_cost(runs: int) -> dict[str, Any]:
    """One genome command in the sandbox against the same command as a plain child."""
    manifest, tree = load_genome(TINY)
    argv = [sys.executable if a == "python" else a for a in manifest.commands.bench]
    with tempfile.TemporaryDirectory() as tmp, Sandbox(Path(tmp) / "sb") as sandbox:
        limits = SandboxLimits.from_manifest(manifest.limits)
        raw: list[float] = []
        boxed: list[float] = []
        with sandbox.workspace(tree) as workdir:
            for _ in range(runs):
                t = time.perf_counter()
                subprocess.run(argv, cwd=workdir, capture_output=True, check=True)
                raw.append(time.perf_counter() - t)
                t = time.perf_counter()
                assert sandbox.run(workdir, manifest.commands.bench, limits).ok
                boxed.append(time.perf_counter() - t)
        return {
            "isolation": sandbox.isolation,
            "raw_run_ms": round(statistics.median(raw) * 1000, 1),
            "sandbox_run_ms": round(statistics.median(boxed) * 1000, 1),
            "sandbox_cost_ms_per_run": round(
                (statistics.median(boxed) - statistics.median(raw)) * 1000, 1
            ),
            "ratio_sandbox_vs_raw": round(statistics.median(boxed) / statistics.median(raw), 3),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 versions instead of 10,000")
    parser.add_argument(
        "--cycles", type=int, default=6, help="measured cycles per history (default 6)"
    )
    args = parser.parse_args()
    big = 1_000 if args.quick else 10_000
    small_run = measure(10, cycles=args.cycles)
    big_run = measure(big, cycles=args.cycles)
    out = {
        "bench": "cycle_overhead",
        "goal_ms_per_candidate": 25,
        "small_history": small_run,
        "large_history": big_run,
        "growth_ratio_large_vs_small": round(
            big_run["overhead_ms_per_candidate_median"]
            / small_run["overhead_ms_per_candidate_median"],
            3,
        ),
        "breakdown (10 versions, timers on)": measure(10, cycles=args.cycles, stages=True),
        "first_sight_of_a_version": first_sight(),
        "sandbox": sandbox_cost(15),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
