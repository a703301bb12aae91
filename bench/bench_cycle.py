"""Framework overhead per candidate, with 10 and with 10,000 versions of history.

Overhead is everything a cycle spends outside the genome's own processes (analysis,
planning, generation, workspaces, actor messages, statistics, the store transaction),
per candidate.  The sandbox's own cost (bwrap, cgroups, rlimits) is reported apart, as
the same commands run in the sandbox against plain ``subprocess.run`` in the same run.

Usage: ``python bench/bench_cycle.py [--quick]`` from the repository root; prints JSON.
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
                Adoption(version_id(new), version_id(tree), patch, "bench", "bench", 0.05, 0.05, 1.0, 1.0, 1.0, {}),
                "bench",
            )
            tree = new


def measure(versions: int, cycles: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder = genome_copy(work)
        url = f"sqlite:///{work / 'store.db'}"
        started = time.perf_counter()
        build_history(url, folder, versions)
        built = time.perf_counter() - started
        config = NodeConfig("bench", url, work / "node", incubators=1, candidates_per_cycle=2)
        with Node(config) as node:
            coordinator = node.coordinator("tiny")
            coordinator.cycle(1, seed=1)  # warm: profiles the head once
            per_candidate: list[float] = []
            for n in range(2, cycles + 2):
                result = coordinator.cycle(n, seed=1)
                if result.candidates:
                    per_candidate.append((result.wall_seconds - result.child_seconds) / result.candidates * 1000)
        return {
            "versions": versions,
            "history_build_s": round(built, 2),
            "overhead_ms_per_candidate_median": round(statistics.median(per_candidate), 2),
            "overhead_ms_per_candidate_max": round(max(per_candidate), 2),
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
            "sandbox_cost_ms_per_run": round((statistics.median(boxed) - statistics.median(raw)) * 1000, 1),
            "ratio_sandbox_vs_raw": round(statistics.median(boxed) / statistics.median(raw), 3),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 versions instead of 10,000")
    args = parser.parse_args()
    big = 1_000 if args.quick else 10_000
    small_run = measure(10, cycles=3)
    big_run = measure(big, cycles=3)
    out = {
        "bench": "cycle_overhead",
        "goal_ms_per_candidate": 25,
        "small_history": small_run,
        "large_history": big_run,
        "growth_ratio_large_vs_small": round(
            big_run["overhead_ms_per_candidate_median"] / small_run["overhead_ms_per_candidate_median"], 3
        ),
        "sandbox": sandbox_cost(15),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
