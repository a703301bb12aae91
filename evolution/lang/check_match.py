"""``match``: patterns against the subject's type, guards, bindings, and exhaustiveness.

A match must cover every value its subject can take: every constructor of a union,
``true`` and ``false`` of a bool, ``none`` of an optional, or end with a catch-all
(``_`` or a name).  An arm with a guard covers nothing for this count (its guard may be
false).  A missing case is an error naming the missing constructors; an arm after a
catch-all is an error too (it can never run).
"""

from __future__ import annotations

from evolution.lang import ast as A
from evolution.lang.check_base import Base, Scope, did_you_mean
from evolution.lang.types import (
    ANY,
    BOOL,
    FLOAT,
    INT,
    NONE,
    STR,
    UNIT,
    Fields,
    Named,
    OptT,
    Ty,
    a,
    assignable,
    join,
)


class MatchChecker(Base):
    """The ``match`` rules; expressions and blocks come from the subclass."""

    def expr(self, e: A.Expr, scope: Scope) -> Ty:  # pragma: no cover - the subclass's
        raise NotImplementedError

    def block(self, block: A.Block, scope: Scope) -> Ty:  # pragma: no cover - the subclass's
        raise NotImplementedError

    def action(self, stmt: A.Deploy | A.Notify | A.Stop, scope: Scope) -> Ty:  # pragma: no cover
        raise NotImplementedError

    def narrowed(self, cond: A.Expr, scope: Scope, truth: bool) -> Scope:  # pragma: no cover
        raise NotImplementedError

    def match(self, e: A.Match, scope: Scope) -> Ty:
        """Check every arm; the match's value is what all its arms share (else no value)."""
        subject = self.expr(e.subject, scope)
        result: Ty | None = None
        mixed = False
        covered: set[str] = set()
        total = False
        none_seen = False
        for arm in e.arms:
            if total:
                self.error(
                    arm.pos,
                    "this arm is never reached",
                    "an earlier arm catches everything: remove or move it",
                )
            bound: Scope = {}
            self.pattern(arm.pattern, subject, bound, none_seen)
            inner = {**scope, **bound}
            if arm.guard is not None:
                guard = self.expr(arm.guard, inner)
                if not assignable(guard, BOOL):
                    self.error(
                        arm.guard.pos, f"a guard is a bool, not {guard}", "compare (`g > 1.5`)"
                    )
            else:
                none_seen = none_seen or _is_none(arm.pattern)
                total = total or self.covers(arm.pattern, subject, covered)
            body = self.arm_body(arm.body, inner)
            if result is None:
                result = body
            elif not mixed:
                joined = join(result, body)
                mixed = joined is None
                result = joined or UNIT
        if not total:
            self.exhaustive(e, subject, covered)
        return UNIT if mixed or result is None else result

    def arm_body(self, body: A.Expr | A.Block | A.Action, scope: Scope) -> Ty:
        if isinstance(body, A.Block):
            return self.block(body, scope)
        if isinstance(body, A.Deploy | A.Notify | A.Stop):
            return self.action(body, scope)
        return self.expr(body, scope)

    def covers(self, pat: A.Pattern, subject: Ty, covered: set[str]) -> bool:
        """Add what an unguarded pattern covers; True when it covers every value."""
        if isinstance(pat, A.WildcardPat):
            return True
        if isinstance(pat, A.NamePat):
            if pat.name in self.table.ctors:
                covered.add(pat.name)
                return False
            return True
        if isinstance(pat, A.CtorPat):
            if all(_irrefutable(a, self) for a in pat.args):
                covered.add(pat.name)
            return (
                isinstance(subject, Named)
                and subject.name in self.table.records
                and all(_irrefutable(a, self) for a in pat.args)
            )
        covered.add(repr(pat.value))
        return False

    def exhaustive(self, e: A.Match, subject: Ty, covered: set[str]) -> None:
        inner = subject.inner if isinstance(subject, OptT) else subject
        wanted = ["None"] if isinstance(subject, OptT) else []
        if isinstance(inner, Named) and inner.name in self.table.unions:
            wanted += self.table.unions[inner.name].names()
        elif inner == BOOL:
            wanted += ["True", "False"]
        else:
            self.error(
                e.pos,
                f"this match on {subject} has no arm for every value",
                "end it with a catch-all arm: `_ -> …`",
            )
            return
        missing = [w for w in wanted if w not in covered]
        if missing:
            words = ", ".join(
                "none" if m == "None" else m.lower() if m in ("True", "False") else m
                for m in missing
            )
            self.error(
                e.pos,
                f"this match on {subject} misses {words}",
                f"add an arm for each ({_example(missing[0], self)} -> …), or `_ -> …` for the rest",
            )

    def pattern(self, pat: A.Pattern, subject: Ty, bound: Scope, none_seen: bool) -> None:
        """Check a pattern against the subject's type; add its bindings to ``bound``."""
        if (
            isinstance(pat, A.WildcardPat)
            or subject == ANY
            and not isinstance(pat, A.CtorPat | A.NamePat)
        ):
            return
        if isinstance(pat, A.LitPat):
            self.literal_pattern(pat, subject)
            return
        name = pat.name
        if isinstance(pat, A.NamePat) and name not in self.table.ctors:
            if name in bound:
                self.error(pat.pos, f"`{name}` is bound twice in one pattern", "use another name")
            narrowed = subject.inner if isinstance(subject, OptT) and none_seen else subject
            bound[name] = narrowed
            return
        args = pat.args if isinstance(pat, A.CtorPat) else ()
        fields = self.pattern_fields(pat, name, subject, none_seen)
        if fields is None:
            for arg in args:
                self.pattern(arg, ANY, bound, False)
            return
        if len(args) != len(fields):
            shape = ", ".join(n for n, _ in fields)
            self.error(
                pat.pos,
                f"`{name}` has {len(fields)} field(s), the pattern gives {len(args)}",
                f"write `{name}({shape})`" if fields else f"write `{name}`",
            )
        for arg, (_, ty) in zip(args, fields, strict=False):
            self.pattern(arg, ty, bound, False)

    def pattern_fields(
        self, pat: A.CtorPat | A.NamePat, name: str, subject: Ty, none_seen: bool
    ) -> Fields | None:
        """The fields a constructor pattern binds, or None after an error."""
        inner = subject.inner if isinstance(subject, OptT) else subject
        if isinstance(inner, Named) and inner.name in self.table.records and inner.name == name:
            return self.table.records[name].fields
        if name not in self.table.ctors:
            options = (
                self.table.unions[inner.name].names()
                if isinstance(inner, Named) and inner.name in self.table.unions
                else []
            )
            self.error(
                pat.pos,
                f"unknown constructor `{name}`{did_you_mean(name, options)}",
                f"{inner}'s constructors: {', '.join(options)}"
                if options
                else "match a declared constructor",
            )
            return None
        union = self.table.ctors[name]
        if inner != ANY and inner != Named(union):
            self.error(
                pat.pos,
                f"`{name}` builds {a(union)}, the subject is {subject}",
                f"match a constructor of {inner}"
                if isinstance(inner, Named)
                else "match on a union",
            )
            return None
        return self.table.ctor_fields(name)

    def literal_pattern(self, pat: A.LitPat, subject: Ty) -> None:
        value = pat.value
        ty: Ty = (
            NONE
            if value is None
            else BOOL
            if isinstance(value, bool)
            else INT
            if isinstance(value, int)
            else FLOAT
            if isinstance(value, float)
            else STR
        )
        if ty == NONE and not isinstance(subject, OptT):
            self.error(pat.pos, f"{a(subject)} is never none", "remove this arm")
        elif ty != NONE and not assignable(
            ty, subject.inner if isinstance(subject, OptT) else subject
        ):
            self.error(
                pat.pos, f"{a(ty)} pattern cannot match {a(subject)}", f"match {subject} values"
            )


def _is_none(pat: A.Pattern) -> bool:
    return isinstance(pat, A.LitPat) and pat.value is None


def _irrefutable(pat: A.Pattern, checker: MatchChecker) -> bool:
    if isinstance(pat, A.WildcardPat):
        return True
    return isinstance(pat, A.NamePat) and pat.name not in checker.table.ctors


def _example(ctor: str, checker: MatchChecker) -> str:
    if ctor in checker.table.ctors:
        fields = checker.table.ctor_fields(ctor)
        return f"`{ctor}({', '.join(n for n, _ in fields)})`" if fields else f"`{ctor}`"
    return f"`{'none' if ctor == 'None' else ctor.lower()}`"
