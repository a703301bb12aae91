"""A rewrite's own expected gain, for a kind never measured on the genome: what it
removes per execution of its site, times how often the site runs.

Under ``measure = "instructions"`` the analyzer's profile counts profiler events (calls
and returns): a C call weighs one event whatever it does, so ``sorted(recent)[-1]`` on 80
items looks as cheap as ``len(recent)``, and the heat model (:mod:`evolution.heat`)
predicted ``min_max_sorted`` at 1.002× where it measured 1.112× (logstats, the
composition bench's seeds 1 and 5: the kinds that pay waited a cycle behind kinds
predicted higher).  The calibration corrects a kind once it is measured; until then this
module estimates the gain from the rewrite itself, for the kinds whose site's work is a
C call the clock cannot see into:

- how often the site runs: the profile counts the calls a function makes to each builtin
  (``find_spikes`` called ``sorted`` 1,859 times), shared among that function's calls of
  the same builtin;
- what one execution removes, in instructions: ``min_max_sorted`` replaces a sort of n
  items (a copy and n·log2(n) comparisons) by a scan of n; ``hoist_invariant`` removes
  its callee's work on every iteration (a sort, a scan, a call);
  n is read from the code when it is plain there (a literal, a module constant, a
  parameter's default, a slice with a constant bound), else there is no prior;
- the costs are CPython's, measured with the fitness's own counter
  (``bench/bench_kind_costs.py``), averaged (geometrically) over the items programs
  commonly sort or scan: small ints, floats, short strings, 2-tuples; they differ by
  3-5x, since CPython specialises a sort's comparison per type;
- the whole: the version's instruction count (``Profile.instructions``), which the
  analyzer takes from the count cache (the parent's count, which judging its candidates
  needs anyway).  The profile's events cannot stand in for it: one event is 420
  instructions on seqdiff, 774 on tomlparse, 1,066 on logstats.

The gain is Amdahl's: ``1 / (1 - saved share)``, and never more than the mutator's static
weight (the program cannot get faster than the code the rewrite touches).  A kind with
no rule here, a size the code does not say, or a profile without a count (a timed
genome, whose profile sees the sort's time already, :mod:`evolution.heat`) has no prior:
the heat model stands.  The calibration decides once the kind is measured
(:func:`evolution.analysis.calibrated`).
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from evolution.mutators.base import Site
from evolution.profile import Profile
from evolution.sites import FunctionSpan

# Measured by ``python bench/bench_kind_costs.py`` (CPython 3.11.7, cachegrind: exact),
# in instructions; docs/planner.md, "Priors", has the run.  Sorts and scans are the
# geometric mean over small ints, floats, short strings and (float, str) tuples: CPython
# specialises a sort's comparison per type, so they differ by 3-5x, and a site does not
# say which it sorts.
#: ``sorted(xs)`` of n items, per n·log2(n) (its copy included): ints 42.5, floats 31.0,
#: strings 71.8, tuples 154.5
SORT_PER_NLOGN = 61.8
#: ``max(xs)`` of n items, per item: ints 158.9, floats 157.3, strings 227.8, tuples 358.3
SCAN_PER_ITEM = 212.5
#: one call of a C builtin (``len(xs)``)
BUILTIN_CALL = 202.0

_CODE = re.compile(r"`([^`]+)`")
#: statements and clauses that bind names
_BINDERS = (
    ast.Assign, ast.AnnAssign, ast.AugAssign, ast.For, ast.With, ast.comprehension,
    ast.NamedExpr, ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef, ast.Delete,
)  # fmt: skip
_DEPTH = 6


def _sort(n: int) -> float:
    return SORT_PER_NLOGN * n * math.log2(n) if n > 1 else BUILTIN_CALL


#: builtin → instructions of one call on n items.  Only builtin *functions*: a call of a
#: type (``set(x)``, ``tuple(x)``) is no event cProfile sees, so its runs are not counted
#: and a hoisted ``set(...)`` has no prior
_WORK: dict[str, Callable[[int], float]] = {
    "sorted": _sort,
    "min": lambda n: SCAN_PER_ITEM * n,
    "max": lambda n: SCAN_PER_ITEM * n,
    "sum": lambda n: SCAN_PER_ITEM * n,
    "len": lambda n: BUILTIN_CALL,
}


@dataclass(frozen=True)
class Prior:
    """A rewrite's own expected gain, and what it stands for in words."""

    gain: float
    words: str
    #: the share of the run the site's work takes (before the rewrite), by the same costs
    share: float


def prior_gain(
    site: Site,
    module: ast.Module,
    profile: Profile | None,
    spans: Mapping[str, FunctionSpan],
) -> Prior | None:
    """The gain a rewrite at ``site`` should give, from what it removes, or None (no prior)."""
    if profile is None or not profile.instructions:
        return None
    expression = _expression(site)
    function = _function(module, site.function)
    if expression is None or function is None:
        return None
    removed = _removed(site.kind, expression, function, module)
    if removed is None:
        return None
    callee, per_execution, what, before = removed
    span = spans.get(site.function)
    row = profile.find(site.file, site.function, (span.first_line, span.def_line) if span else ())
    same = sum(
        1
        for node in ast.walk(function)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == callee
    )
    if row is None or same == 0 or per_execution <= 0:
        return None
    executions = row.called(callee) / same
    saved = executions * per_execution / profile.instructions
    if saved <= 0:
        return None
    gain = min(site.weight, 1.0 / (1.0 - min(saved, 0.99)))
    runs = f"{executions:,.0f} run{'' if round(executions) == 1 else 's'}"
    words = f"untried: it removes {what} on each of {runs}, {gain:.3f}× by its own cost"
    return Prior(gain, words, min(1.0, executions * before / profile.instructions))


def _removed(
    kind: str, expression: ast.expr, function: ast.AST, module: ast.Module
) -> tuple[str, float, str, float] | None:
    """(the builtin the site calls, instructions one execution of the rewrite removes,
    what that is in words, instructions one execution of the site's code takes)."""
    if kind == "min_max_sorted":
        # ``sorted(x)[0]`` / ``sorted(x)[-1]`` → ``min(x)`` / ``max(x)``: a sort for a scan
        if not (isinstance(expression, ast.Subscript) and _is_call(expression.value, "sorted")):
            return None
        if isinstance(expression.slice, ast.Slice):
            return None  # the heapq form: its cost depends on k as well, no prior
        call = expression.value
        assert isinstance(call, ast.Call)
        n = _size(call.args[0], function, module) if call.args else None
        if n is None:
            return None
        return "sorted", _sort(n) - SCAN_PER_ITEM * n, f"a sort of {n} items for a scan", _sort(n)
    if kind == "hoist_invariant":
        # the callee's whole work, every iteration, is what moves out of the loop
        if not (isinstance(expression, ast.Call) and isinstance(expression.func, ast.Name)):
            return None
        work = _WORK.get(expression.func.id)
        if work is None:
            return None
        name = expression.func.id
        if name == "len":
            return "len", BUILTIN_CALL, "a call of `len`", BUILTIN_CALL
        n = _size(expression.args[0], function, module) if expression.args else None
        return None if n is None else (name, work(n), f"`{name}` of {n} items", work(n))
    return None


def _is_call(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name


def _expression(site: Site) -> ast.expr | None:
    """The site's code, as its mutator quotes it in its detail (None if cut short)."""
    found = _CODE.search(site.detail)
    if found is None or "…" in found.group(1):
        return None
    try:
        return ast.parse(found.group(1), mode="eval").body
    except (SyntaxError, ValueError):
        return None


def _function(module: ast.Module, qualname: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    scope: ast.AST = module
    found: ast.FunctionDef | ast.AsyncFunctionDef | None = None
    for part in qualname.split("."):
        for child in ast.iter_child_nodes(scope):
            if (
                isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                and child.name == part
            ):
                scope = child
                break
        else:
            return None
        found = scope if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)) else None
    return found


def _binding(name: str, scope: ast.AST, *, nested: bool) -> tuple[bool, ast.expr | None]:
    """Whether ``scope`` binds ``name``, and the one value it binds it to: a parameter's
    default or a single plain assignment (None when bound otherwise, or more than once)."""
    values: list[ast.expr | None] = []
    if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)):
        args = scope.args
        positional = [*args.posonlyargs, *args.args]
        defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
        pairs = [
            *zip(positional, defaults, strict=True),
            *zip(args.kwonlyargs, args.kw_defaults, strict=True),
        ]
        values.extend(default for arg, default in pairs if arg.arg == name)
        if any(a is not None and a.arg == name for a in (args.vararg, args.kwarg)):
            values.append(None)
    for node in ast.walk(scope) if nested else ast.iter_child_nodes(scope):
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id == name:
                values.append(node.value)
                continue
        if isinstance(node, _BINDERS) and name in _stored(node):
            values.append(None)
    return bool(values), values[0] if len(values) == 1 else None


def _stored(node: ast.AST) -> set[str]:
    """The names ``node`` (one statement or clause) binds, not those of its body."""
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in node.names}
    heads: list[ast.AST] = []
    if isinstance(node, ast.Assign):
        heads = list(node.targets)
    elif isinstance(
        node, (ast.AnnAssign, ast.AugAssign, ast.For, ast.comprehension, ast.NamedExpr)
    ):
        heads = [node.target]
    elif isinstance(node, ast.With):
        heads = [i.optional_vars for i in node.items if i.optional_vars is not None]
    elif isinstance(node, ast.Delete):
        heads = list(node.targets)
    # only the names stored: ``counts[f(bounds)] += 1`` binds no ``bounds``
    return {
        n.id
        for h in heads
        for n in ast.walk(h)
        if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)
    }


def _mutated(name: str, scope: ast.AST) -> bool:
    """Whether ``name`` may change size in ``scope``: a method called on it, an item set."""
    for node in ast.walk(scope):
        if isinstance(node, ast.Attribute | ast.Subscript) and not (
            isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load)
        ):
            inner = node.value
        elif isinstance(node, ast.AugAssign):
            inner = node.target
        else:
            continue
        if isinstance(inner, ast.Name) and inner.id == name:
            return True
    return False


def _resolve(name: str, function: ast.AST, module: ast.Module) -> ast.expr | None:
    """The one value ``name`` holds in ``function``: its own binding, else the module's."""
    bound, value = _binding(name, function, nested=True)
    if bound:
        return value
    return _binding(name, module, nested=False)[1]


def _integer(
    node: ast.expr | None, function: ast.AST, module: ast.Module, depth: int = 0
) -> int | None:
    if node is None or depth > _DEPTH:
        return None
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _integer(node.operand, function, module, depth + 1)
        return None if inner is None else -inner
    if isinstance(node, ast.Name):
        return _integer(_resolve(node.id, function, module), function, module, depth + 1)
    return None


def _size(
    node: ast.expr | None, function: ast.AST, module: ast.Module, depth: int = 0
) -> int | None:
    """How many items ``node`` holds, when the code says it plainly (else None)."""
    if node is None or depth > _DEPTH:
        return None
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        if any(isinstance(e, ast.Starred) for e in node.elts):
            return None
        return len(node.elts)
    if isinstance(node, ast.Name):
        value = _resolve(node.id, function, module)
        if isinstance(value, (ast.List, ast.Set)) and (
            _mutated(node.id, function) or _mutated(node.id, module)
        ):
            return None  # ``history = []`` then appended to: its size is the run's
        return _size(value, function, module, depth + 1)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) == 1:
        if node.func.id in ("list", "tuple", "sorted") and not node.keywords:
            return _size(node.args[0], function, module, depth + 1)
        return None
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice):
        part = node.slice
        if part.step is not None:
            return None
        whole = _size(node.value, function, module, depth + 1)
        lower = _integer(part.lower, function, module) if part.lower is not None else 0
        upper = _integer(part.upper, function, module) if part.upper is not None else None
        if lower is not None and lower < 0 and part.upper is None:
            n = -lower  # x[-k:]: the last k
        elif lower is not None and lower >= 0 and upper is not None and upper >= lower:
            n = upper - lower  # x[a:b]
        else:
            return whole if part.lower is None and part.upper is None else None
        return n if whole is None else min(n, whole)
    return None
