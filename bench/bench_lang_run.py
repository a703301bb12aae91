"""The interpreter's overhead per evolution cycle, against the same cycles run as the CLI runs them.

Both sides evolve the tiny genome (tests/data/tiny) from its registration on a fresh
store, same seed, same candidates per cycle, in this process:

- ``cli_s``: ``Node.register`` then ``Node.evolve`` (what `tars evolve run` calls);
- ``script_s``: `tars run`'s campaign (:class:`cli.run_campaign.Campaign`) on a script
  whose ``on verdict`` handler does a ``match`` with guards and a ``notify`` per
  candidate, and ``on done`` reads the log's history;
- ``interp_ms_per_cycle``: the time spent in the script's own work each cycle (building
  the Verdict values and running the handlers), measured around it: what the interpreter
  adds; ``overhead_pct`` is it over the CLI's mean cycle.

``ratio`` (script over CLI, end to end) also holds the sandbox's noise between two runs
of the same cycles; ``overhead_pct`` is the interpreter's part alone.  Goal ≤ 5 %.

    python bench/bench_lang_run.py [--cycles 3] [--candidates 2]

Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402

from cli.run_campaign import Campaign  # noqa: E402
from evolution.lang import ast as A  # noqa: E402
from evolution.lang.checker import check_source  # noqa: E402
from evolution.lang.eval import Interpreter  # noqa: E402
from node import Node, NodeConfig  # noqa: E402
from runtime.lang.host import RealHost  # noqa: E402

TINY = ROOT / "tests" / "data" / "tiny"

SCRIPT = """genome tiny from "{tiny}/genome.toml"
type Outcome = Faster(gain: float) | Same | Broken(reason: str)
fn classify(v: Verdict) -> Outcome {{
  if not v.accepted {{ return Broken(v.reason) }}
  if v.gain > 1.0 {{ Faster(v.gain) }} else {{ Same }}
}}
evolve tiny {{
  cycles = {cycles}
  candidates = {candidates}
  seed = 7
  on verdict(v: Verdict) {{
    match classify(v) {{
      Faster(g) if g > 1.5 -> notify "big {{g}}"
      Faster(g) -> notify "small {{g}}"
      Same -> notify "same"
      Broken(reason) -> notify "broken {{reason}}"
    }}
  }}
  on done(g: Genome) {{
    notify "{{g.name}} {{len(history(g))}}"
  }}
}}
"""


def cli_run(work: Path, cycles: int, candidates: int) -> float:
    """The CLI's cycles: register, then evolve."""
    config = NodeConfig(
        "local", f"sqlite:///{work / 'cli.db'}", work / "cli", candidates_per_cycle=candidates
    )
    started = time.perf_counter()
    with Node(config) as node:
        name, _ = node.register(TINY)
        node.evolve(name, cycles, 7)
    return time.perf_counter() - started


def script_run(work: Path, cycles: int, candidates: int) -> tuple[float, float]:
    """The same cycles through `tars run`'s campaign; (wall, seconds in the script's own work)."""
    text = SCRIPT.format(tiny=TINY, cycles=cycles, candidates=candidates)
    checked = check_source(text, str(work / "bench.tars"))
    assert checked.ok and checked.program is not None, checked.errors
    host = RealHost(text, work, checked.table, lambda _: None)
    interp = Interpreter(checked, host)
    decl = next(d for d in checked.program.decls if isinstance(d, A.EvolveDecl))
    campaign = Campaign(interp, host, decl, Console(quiet=True))
    host.on_deploy = campaign.deploy
    spent = [0.0]
    inner = campaign._cycle

    def timed(name: str, info: dict[str, Any]) -> None:
        began = time.perf_counter()
        inner(name, info)
        spent[0] += time.perf_counter() - began

    campaign._cycle = timed  # type: ignore[method-assign]
    started = time.perf_counter()
    interp.start()
    campaign.run(str(work / "script.db"), work / "script", False)
    return time.perf_counter() - started, spent[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--candidates", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tars-bench-lang-run-") as tmp:
        work = Path(tmp)
        cli_s = cli_run(work, args.cycles, args.candidates)
        script_s, own_s = script_run(work, args.cycles, args.candidates)
    per_cycle = cli_s / args.cycles
    print(
        json.dumps(
            {
                "cycles": args.cycles,
                "candidates": args.candidates,
                "cli_s": round(cli_s, 3),
                "script_s": round(script_s, 3),
                "ratio": round(script_s / cli_s, 3),
                "interp_ms_per_cycle": round(own_s / args.cycles * 1000, 3),
                "overhead_pct": round(own_s / args.cycles / per_cycle * 100, 3),
                "goal_pct": 5.0,
            }
        )
    )


if __name__ == "__main__":
    main()
