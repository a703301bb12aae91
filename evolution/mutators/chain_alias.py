"""An ``if``/``elif`` chain that tests ``self.attr`` in each branch can read it once.

A state machine written as ``if self.state is None: … elif self.state == ' ': … elif
self.state in self.quotes: …`` loads the attribute again for every test it reaches
(shlex's ``read_token``: five tests per character).  Reading it into a local just before
the ``if`` and testing the local is one attribute lookup instead of up to five: measured
on the shellsplit genome under the instruction counter, 1.016× on the whole benchmark.

Why the value is the same: the read moves to the exact point where the first test made
it, because the first test *begins* with that read (``self.attr``, ``self.attr <op> …``,
``not self.attr``, ``self.attr and …``); nothing runs between the tests of a chain but
the tests themselves (a body runs only once a test is true, and then no later test is
evaluated); so the later reads see the same binding when nothing in the tests can rebind
it:

- the tests make no call but those :func:`alias_guard.harmless_calls` clears, and no
  assignment expression, lambda, comprehension, ``await`` or ``yield``;
- ``self`` is the first parameter of a plain method of a class of this module, not
  rebound in the method, whose ``__init__`` assigns ``self.attr`` and which binds no
  ``attr``, ``__getattr__``, ``__getattribute__`` or ``__slots__`` at class level (a data
  attribute, not a property whose getter could compute or count: ``alias_data``'s rule).

Residual risk (``alias_data``'s): a comparison or ``in`` that calls a user ``__eq__`` or
``__contains__`` which rebinds the attribute between two tests; a property of a subclass
defined in another module.
"""

from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from evolution.mutators.alias_data import _init_assigns
from evolution.mutators.alias_guard import harmless_calls
from evolution.mutators.base import CstMutator, Finding, Scan
from evolution.mutators.cst_tools import (
    COMPS,
    SCOPES,
    Edit,
    Located,
    binding_names,
    block_of,
    enclosing_loops,
    statement,
    subtree,
)
from evolution.mutators.inline_scope import self_method

#: what a test may not hold: it could rebind the attribute or read it later, elsewhere
_REFUSED: tuple[type[cst.CSTNode], ...] = (
    cst.NamedExpr,
    cst.Lambda,
    cst.Await,
    cst.Yield,
    *COMPS,
    *SCOPES,
)


def _tests(node: cst.If) -> list[cst.BaseExpression]:
    """The tests of the chain, in the order they are evaluated: the ``if``'s, then each ``elif``'s."""
    out: list[cst.BaseExpression] = []
    branch: cst.If | cst.Else | None = node
    while isinstance(branch, cst.If):
        out.append(branch.test)
        branch = branch.orelse
    return out


def _first_read(expr: cst.BaseExpression) -> cst.Attribute | None:
    """The attribute read the expression evaluates first, when it begins with one."""
    while True:
        if isinstance(expr, cst.Attribute):
            return expr if isinstance(expr.value, cst.Name) else None
        if isinstance(expr, (cst.Comparison, cst.BooleanOperation)):
            expr = expr.left
        elif isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, cst.Not):
            expr = expr.expression
        else:
            return None


def _reads(tests: list[cst.BaseExpression], owner: str, attr: str) -> list[cst.Attribute]:
    """Every load of ``owner.attr`` in the tests (a called ``owner.attr(...)`` is not one)."""
    out: list[cst.Attribute] = []
    for test in tests:
        called = {id(n.func) for n in subtree(test) if isinstance(n, cst.Call)}
        out.extend(
            n
            for n in subtree(test)
            if isinstance(n, cst.Attribute)
            and isinstance(n.value, cst.Name)
            and n.value.value == owner
            and n.attr.value == attr
            and id(n) not in called
        )
    return out


class ChainAlias(CstMutator):
    name = "chain_alias"
    risk = 0.15
    kinds = (cst.If,)

    def match(self, scan: Scan, loc: Located) -> Iterator[Finding]:
        idx, node = scan.idx, loc.node
        assert isinstance(node, cst.If)
        if block_of(loc) is None:
            return  # an ``elif`` (its parent is the ``if``), or not a statement of a block
        tests = _tests(node)
        first = _first_read(tests[0])
        if len(tests) < 2 or first is None:
            return
        assert isinstance(first.value, cst.Name)
        owner, attr = first.value.value, first.attr.value
        if attr.startswith("__"):
            return
        reads = _reads(tests, owner, attr)
        if len(reads) < 2 or any(isinstance(n, _REFUSED) for t in tests for n in subtree(t)):
            return
        if not all(harmless_calls(idx, t) for t in tests):
            return
        method = self_method(idx, loc)
        if method is None or method[1] != owner or method[2].name.value == "__init__":
            return
        cls, _, func = method
        if owner in binding_names(func.body) or not _init_assigns(cls, attr):
            return

        def edit() -> Edit:
            e = Edit()
            alias = idx.fresh(f"_{attr}")
            e.insert_before(node, statement(f"{alias} = {owner}.{attr}"))
            for read in reads:
                e.replace(read, cst.Name(alias, lpar=read.lpar, rpar=read.rpar))
            return e

        depth = len(enclosing_loops(loc))
        weight = min(1.2, 1.0 + 0.005 * (len(reads) - 1) * (1 + depth))
        detail = (
            f"`{owner}.{attr}` read by {len(reads)} tests of one if/elif chain"
            f"{' in a loop' if depth else ''}"
        )
        yield scan.finding(loc, detail, weight, edit)
