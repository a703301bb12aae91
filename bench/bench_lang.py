"""Parse and type-check a generated 2,000-line `.tars` script, against the raw parser.

The script repeats a unit of every kind of declaration (records, a union, a function
with a `match`, a prompt block with holes, sources, tune parameters, a campaign with a
handler) until it is ``--lines`` long.  Measured in one run, best of ``--runs``:

- ``check_ms``: ``check_source`` (Lark's parse, the AST, string holes, the whole checker);
- ``lark_ms``: Lark parsing the same text alone, with the same grammar and settings (a
  parse tree with positions, no AST, no checking): the ratio says what the AST and the
  checker cost on top; ``lark_bare_ms``: the same without positions and post-lexer (the
  least Lark does on this grammar; this text needs no line joined);
- ``grammar_build_ms``: building the LALR tables once per process (``tars check`` pays it);
- ``python_ast_ms``: CPython's own ``ast.parse`` of a 2,000-line Python file, for scale.

Goal: ``check_ms`` ≤ 200 on 2,000 lines.

    python bench/bench_lang.py [--lines 2000] [--runs 7]

Prints JSON.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lark import Lark  # noqa: E402

from evolution.lang.checker import check_source  # noqa: E402
from evolution.lang.grammar import GRAMMAR  # noqa: E402
from evolution.lang.parser import _lark  # noqa: E402

UNIT = '''
record Row{i}(name: str, count: int, note: str?)
type Outcome{i} = Faster{i}(gain: float) | Same{i} | Broken{i}(reason: str)
tune limit{i}: int in 1..8 = 2
source rows{i}: file<jsonl, Row{i}> = "data/rows{i}.jsonl"

fn classify{i}(v: Verdict) -> Outcome{i} {{
  let g = v.gain
  if not v.accepted {{
    return Broken{i}("refused: {{v.reason}}")
  }}
  if g > 1.0 {{ Faster{i}(g) }} else {{ Same{i} }}
}}

fn total{i}(r: Row{i}) -> int {{
  let base = r.count * limit{i} + len(rows{i})
  match r.note {{
    none -> base
    n -> base + len(n)
  }}
}}

prompt improve{i}(h: Hotspot) -> Patch """
Make {{h.function}} in {{h.file}} faster; it takes {{h.share}} of the run.
{{h.code}}
"""

evolve g {{
  prompt = improve{i}
  cycles = limit{i}
  on verdict(v: Verdict) {{
    match classify{i}(v) {{
      Faster{i}(x) if x > 1.5 -> deploy canary(steps=[1, 10, 50, 100])
      Faster{i}(x) -> notify "small: {{x}}"
      Same{i} -> notify "same"
      Broken{i}(why) -> notify "broken: {{why}}"
    }}
  }}
}}
'''

PY_UNIT = """
class Row{i}:
    def __init__(self, name, count, note=None):
        self.name, self.count, self.note = name, count, note


def classify{i}(v):
    g = v.gain
    if not v.accepted:
        return ("broken", f"refused: {{v.reason}}")
    return ("faster", g) if g > 1.0 else ("same",)


def total{i}(r, limit=2, rows=()):
    base = r.count * limit + len(rows)
    match r.note:
        case None:
            return base
        case n:
            return base + len(n)
"""


def script(lines: int, unit: str, head: str) -> str:
    parts = [head]
    i = 0
    while sum(p.count("\n") for p in parts) < lines:
        parts.append(unit.format(i=i))
        i += 1
    text = "".join(parts)
    return "\n".join(text.splitlines()[:lines]) + "\n" if unit is PY_UNIT else text


def best(runs: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    text = script(args.lines, UNIT, 'genome g from "g/genome.toml"\n')
    python = script(args.lines, PY_UNIT, "")
    start = time.perf_counter()
    lark = _lark()
    grammar_ms = (time.perf_counter() - start) * 1000
    checked = check_source(text, "bench.tars")
    assert checked.ok, checked.errors[0].render()
    bare = Lark(GRAMMAR, parser="lalr", lexer="basic", start="start")
    check_ms = best(args.runs, lambda: check_source(text, "bench.tars"))
    lark_ms = best(args.runs, lambda: lark.parse(text, start="start"))
    bare_ms = best(args.runs, lambda: bare.parse(text))
    python_ms = best(args.runs, lambda: ast.parse(python))
    print(
        json.dumps(
            {
                "lines": text.count("\n"),
                "declarations": len(checked.program.decls) if checked.program else 0,
                "check_ms": round(check_ms, 2),
                "lark_ms": round(lark_ms, 2),
                "lark_bare_ms": round(bare_ms, 2),
                "grammar_build_ms": round(grammar_ms, 2),
                "python_ast_ms": round(python_ms, 2),
                "python_lines": python.count("\n"),
                "check_over_lark": round(check_ms / lark_ms, 2),
                "check_over_python_ast": round(check_ms / python_ms, 2),
                "goal_ms": 200,
                "goal_met": check_ms <= 200,
            }
        )
    )


if __name__ == "__main__":
    main()
