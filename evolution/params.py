"""Parameter search over the constants a manifest marks ``[[tunable]]``.

Many programs are slow because of a number (a chunk size, a cache size, a batch
length), not because of their code.  The genome's author marks such module-level
constants tunable with a range; this module reads them, rewrites them, and proposes
the next values to try.

Rewrites touch only the characters of the number literal, located by the ``ast`` node
positions, so the candidate's diff is one line and comments, spacing and every other
byte survive (a regex would also match the name in a comment or a string).

The search is a derivative-free pattern search, because each evaluation is a whole
incubation (tests plus interleaved benchmark rounds) and the gain is noisy:

* it starts with geometric steps (×2 and ÷2) around the current value, since sizes
  and counts matter by orders of magnitude, not by units;
* it moves its centre to the best value seen (highest gain ratio above 1.0) and
  resumes one step size coarser than the gap that led there, so a run of successes
  speeds up and the search does not re-test ground it has just crossed;
* when both neighbours at a step size have been tried, it halves the step's exponent
  (×2 → ×√2 → ×2^¼ …), down to about 1 % (and never below ±1 for ints);
* it never proposes a value already tried (or the current one, or one within half
  the finest step of either), and returns nothing once every step size around the
  best value is spent: the constant has converged, so the cycle's sandbox time goes
  elsewhere.

The ``rng`` only decides which direction comes first at each step, so neither "bigger"
nor "smaller" is favoured systematically, and the same seed repeats the same proposals.
"""

from __future__ import annotations

import ast
import math
import random
from collections.abc import Mapping

from evolution.errors import MutationError

KINDS = ("int", "float")

#: Step exponents 2^(2^-k) for k = 0 … _LEVELS-1: factors 2, 1.41, 1.19, 1.09, 1.04, 1.02, 1.01.
_LEVELS = 7
#: Half the log of the finest step: values closer than this to a tried one count as tried.
_NEAR = math.log(2.0) * 2.0 ** -(_LEVELS - 1) / 2.0
#: Float proposals keep this many significant digits, so the source stays readable.
_DIGITS = 6


def read_constant(source: str, name: str) -> float | None:
    """The value of module-level ``name = <number>``; None when absent, not a number, or the file does not parse."""
    node = _find(source, name)
    return None if node is None else _number(node)


def set_constant(source: str, name: str, value: float, kind: str) -> str:
    """``source`` with only the number literal assigned to ``name`` replaced by ``value``."""
    _check_kind(kind)
    if not math.isfinite(value):
        raise ValueError(f"cannot write {value!r} into {name}: tunable values must be finite")
    node = _find(source, name)
    if node is None:
        raise MutationError(
            f"tunable {name} is not a module-level `{name} = <number>` assignment",
            hint="check the tunable's name and file in genome.toml",
        )
    assert node.end_lineno is not None and node.end_col_offset is not None
    starts = _line_starts(source)
    start = _offset(source, starts, node.lineno, node.col_offset)
    end = _offset(source, starts, node.end_lineno, node.end_col_offset)
    return source[:start] + format_value(value, kind) + source[end:]


def format_value(value: float, kind: str) -> str:
    """The literal written into the source: an int for int tunables, a round-tripping float otherwise."""
    _check_kind(kind)
    if kind == "int":
        return str(_round_int(value))
    return repr(float(value))


def propose(
    current: float,
    low: float,
    high: float,
    kind: str,
    tried: Mapping[float, float | None],
    rng: random.Random,
    count: int = 2,
) -> list[float]:
    """Up to ``count`` new values to try next, largest step first; empty once the search has converged.

    ``tried`` maps each value already incubated to its gain ratio over the parent
    (> 1 is better), or None when the candidate failed.  Int tunables get ints back.
    """
    _check_kind(kind)
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise ValueError(f"tunable range [{low}, {high}] is empty: min must be below max")
    if count < 0:
        raise ValueError(f"count must be 0 or more, not {count}")
    if kind == "int":
        low, high = float(math.ceil(low)), float(math.floor(high))
        if low > high:
            return []
    seen = {_normal(v, kind) for v in tried} | {_normal(current, kind)}
    centre = _normal(_best(current, tried), kind)
    centre = min(max(centre, low), high)

    out: list[float] = []
    first = _first_level(centre, seen)
    if centre != _normal(current, kind):
        first = max(0, first - 1)  # a success: grow the step again, as pattern searches do
    for level in range(first, _LEVELS):
        steps = _neighbours(centre, level, low, high, kind)
        if rng.random() < 0.5:
            steps.reverse()
        for value in steps:
            if not _near(value, seen) and len(out) < count:
                seen.add(value)
                out.append(value)
        if len(out) >= count:
            break
    return [int(v) for v in out] if kind == "int" else out


def _best(current: float, tried: Mapping[float, float | None]) -> float:
    """The value with the highest gain above 1.0; the current value when nothing beat it."""
    winners = [(gain, value) for value, gain in tried.items() if gain is not None and gain > 1.0]
    if not winners:
        return current
    # ties: the value closest to current (smallest move), then the smaller value
    return max(winners, key=lambda gv: (gv[0], -abs(gv[1] - current), -gv[1]))[1]


def _near(value: float, seen: set[float]) -> bool:
    """Whether ``value`` was tried, or as good as: within half the finest step of a tried value.

    Rounding makes near-twins (8192 and 8193 reached from different centres); measuring
    both would spend an incubation on a difference far below the benchmark's noise.
    """
    if value in seen:
        return True
    return any(v * value > 0 and abs(math.log(value / v)) < _NEAR for v in seen)


def _first_level(centre: float, seen: set[float]) -> int:
    """The step size to resume with: no coarser than the gap to the nearest value already tried.

    Restarting at ×2 after every move would re-test ground the search has just crossed;
    keeping the step that found the new centre is what makes a pattern search converge.
    """
    if centre == 0:
        return 0
    gaps = [abs(math.log(v / centre)) for v in seen if v != centre and v * centre > 0]
    if not gaps:
        return 0
    gap = min(gaps)
    for level in range(_LEVELS):
        if math.log(2.0) * 2.0**-level <= gap * (1 + 1e-9):
            return level
    return _LEVELS - 1


def _neighbours(centre: float, level: int, low: float, high: float, kind: str) -> list[float]:
    """The two values one step up and one step down from ``centre`` at this step size."""
    span = high - low
    if centre != 0:
        factor = 2.0 ** (2.0**-level)
        up, down = (
            (centre * factor, centre / factor) if centre > 0 else (centre / factor, centre * factor)
        )
    else:  # no geometric step from zero: arithmetic steps of a quarter of the range, halving
        step = span / 4.0 / 2.0**level
        up, down = centre + step, centre - step
    values: list[float] = []
    for raw, sign in ((up, 1.0), (down, -1.0)):
        value = _normal(raw, kind)
        if kind == "int" and value == centre:
            value = centre + sign  # the smallest move an int can make
        value = min(max(value, low), high)
        if value != centre:
            values.append(value)
    return values


def _normal(value: float, kind: str) -> float:
    """Canonical form of a value, so 4, 4.0 and 4.0000001 are one try, not three."""
    if kind == "int":
        return float(_round_int(value))
    if value == 0:
        return 0.0
    return float(f"{value:.{_DIGITS}g}")


def _round_int(value: float) -> int:
    return math.floor(value + 0.5)  # half up: Python's round() sends 2.5 to 2 and 3.5 to 4


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"tunable kind must be 'int' or 'float', not {kind!r}")


def _find(source: str, name: str) -> ast.expr | None:
    """The value node of the last module-level numeric assignment to ``name`` (the one in effect)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    found: ast.expr | None = None
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            targets: list[ast.expr] = list(stmt.targets)
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            targets = [stmt.target]
        else:
            continue
        named = any(isinstance(t, ast.Name) and t.id == name for t in targets)
        if named and stmt.value is not None and _number(stmt.value) is not None:
            found = stmt.value
    return found


def _number(node: ast.expr) -> float | None:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        inner = _number(node.operand)
        if inner is None:
            return None
        return -inner if isinstance(node.op, ast.USub) else inner
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    ):
        return node.value
    return None


def _line_starts(source: str) -> list[int]:
    """Character offset of each line's start, splitting lines exactly as the tokenizer does (\\n, \\r\\n, \\r)."""
    starts = [0]
    i, n = 0, len(source)
    while i < n:
        ch = source[i]
        if ch == "\r" and i + 1 < n and source[i + 1] == "\n":
            i += 2
            starts.append(i)
            continue
        i += 1
        if ch in "\r\n":
            starts.append(i)
    return starts


def _offset(source: str, starts: list[int], lineno: int, col_bytes: int) -> int:
    """Character offset of an ast position (ast columns count UTF-8 bytes, not characters)."""
    line_start = starts[lineno - 1]
    line_end = starts[lineno] if lineno < len(starts) else len(source)
    prefix = source[line_start:line_end].encode("utf-8")[:col_bytes]
    return line_start + len(prefix.decode("utf-8"))
