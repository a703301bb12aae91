"""`tune` parameters as a genome's genes: the values to try, and the script rewritten with them.

Pure.  :func:`trials` proposes the values to prove: one parameter moved at a time to a
neighbour of its current value inside its declared domain (an int ±1, a float ±10 %, the
other choices of a list, a bool flipped), ordered by a hash of the seed and capped, so a run costs
a known number of campaigns.  :func:`rewrite` gives the script's text with new defaults,
touching only the default's characters on the ``tune`` lines, so the version's diff reads
as exactly the lines that changed.
"""

from __future__ import annotations

import hashlib
import re

from evolution.lang import ast as A
from evolution.lang.introspect import TuneInfo

_LITERAL = re.compile(r'"(?:[^"\\\n]|\\.)*"|-?[0-9][0-9.eE+-]*|true|false')


def _parse(text: str, kind: str) -> int | float | str | bool:
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "bool":
        return text == "true"
    return text


def written(value: int | float | str | bool) -> str:
    """A value as a script writes it (``"terse"``, ``1.1``, ``true``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def neighbours(info: TuneInfo, current: int | float | str | bool) -> list[int | float | str | bool]:
    """The values next to ``current`` within the parameter's domain."""
    if info.choices:
        return [c for c in (_parse(c, info.type) for c in info.choices) if c != current]
    assert info.low is not None and info.high is not None
    low, high = _parse(info.low, info.type), _parse(info.high, info.type)
    assert isinstance(low, int | float) and isinstance(high, int | float)
    assert isinstance(current, int | float)
    if info.type == "int":
        near: list[int | float] = [int(current) - 1, int(current) + 1]
    else:
        near = [round(current * 0.9, 4), round(current * 1.1, 4)]
    return [v for v in near if low <= v <= high and v != current]


def trials(
    tunes: tuple[TuneInfo, ...],
    current: dict[str, int | float | str | bool],
    seed: int,
    limit: int,
) -> list[dict[str, int | float | str | bool]]:
    """Up to ``limit`` value sets to prove, each one parameter away from ``current``."""
    found = [
        {**current, info.name: value}
        for info in tunes
        for value in neighbours(info, current[info.name])
    ]
    # ordered by a hash of the seed and the values: shuffled, reproducible, no global state
    found.sort(key=lambda v: hashlib.sha256(f"{seed}:{sorted(v.items())}".encode()).digest())
    return found[:limit]


def rewrite(program: A.Program, values: dict[str, int | float | str | bool]) -> str:
    """The script's text with each named tune parameter's default set to ``values[name]``."""
    lines = program.text.split("\n")
    for decl in program.decls:
        if not isinstance(decl, A.TuneDecl) or decl.name not in values:
            continue
        pos = decl.default.pos
        line = lines[pos.line - 1]
        start = pos.column - 1
        found = _LITERAL.match(line, start)
        assert found is not None, f"the default of {decl.name} is a literal (the checker says)"
        lines[pos.line - 1] = line[:start] + written(values[decl.name]) + line[found.end() :]
    return "\n".join(lines)
