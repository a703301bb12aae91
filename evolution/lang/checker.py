"""Type-check a parsed script: every rule of docs/language.md, every error found at once.

``check(program)`` gives a :class:`Checked`: the errors (each a ``ScriptError`` with its
place and a fix), the type table and the globals' types (what the interpreter resolves
names against), and the script's own structure (:mod:`evolution.lang.introspect`).
``check_source(text, file)`` parses first; a syntax error is then the one error.

Order: types first (records and unions may refer to each other in any order), then the
signatures of everything named at the top level (so functions may call later ones), then
top-level ``let`` in order, then bodies, prompts and campaigns.
"""

from __future__ import annotations

from dataclasses import dataclass

from evolution.errors import ScriptError
from evolution.lang import ast as A
from evolution.lang.check_base import Scope, did_you_mean
from evolution.lang.check_call import no_calls_when_improving, server_decl
from evolution.lang.check_decls import DeclChecker
from evolution.lang.check_expr import BUILTINS
from evolution.lang.introspect import ScriptInfo, describe
from evolution.lang.parser import parse, too_deep
from evolution.lang.types import (
    ANY,
    PRIMS,
    STR,
    UNIT,
    Fields,
    FnT,
    Named,
    RecordDef,
    Ty,
    TypeTable,
    UnionDef,
    a,
    assignable,
    new_table,
)


@dataclass(frozen=True)
class Checked:
    """What the checker found: ``ok`` when ``errors`` is empty."""

    program: A.Program | None
    errors: tuple[ScriptError, ...]
    table: TypeTable
    globals: Scope
    info: ScriptInfo | None

    @property
    def ok(self) -> bool:
        """No parse or type error."""
        return not self.errors


def check_source(text: str, file: str = "<script>") -> Checked:
    """Parse and check a script's text; a syntax error is reported as the one error."""
    try:
        program = parse(text, file)
    except ScriptError as exc:
        return Checked(None, (exc,), new_table(), {}, None)
    return check(program)


def check(program: A.Program) -> Checked:
    """Check a parsed script; the errors come in the order of their position."""
    checker = _Checker(program, new_table())
    try:
        checker.run()
    except RecursionError:
        checker.errors.append(too_deep(program.text, program.file))
    errors = sorted(checker.errors, key=lambda e: (e.line, e.column))
    return Checked(program, tuple(errors), checker.table, checker.globals, describe(program))


class _Checker(DeclChecker):
    def run(self) -> None:
        decls = self.program.decls
        self.declare_types(decls)
        self.declare_values(decls)
        genomes = {d.name for d in decls if isinstance(d, A.GenomeDecl)}
        for decl in decls:
            if isinstance(decl, A.FnDecl):
                self.function(decl)
            elif isinstance(decl, A.PromptDecl):
                params = {p.name: self.resolve(p.type) for p in decl.params}
                self.prompt(decl, params, self.resolve(decl.result))
            elif isinstance(decl, A.GenomeDecl):
                self.genome(decl)
            elif isinstance(decl, A.EvolveDecl):
                self.evolve(decl, genomes)
            elif isinstance(decl, A.ServerDecl):
                server_decl(self, decl)
            elif isinstance(decl, A.McpCall):
                self.expr(decl, self.globals)
        no_calls_when_improving(self, decls)

    def declare_types(self, decls: tuple[A.Decl, ...]) -> None:
        """Records and unions into the table (names first, then their fields' types)."""
        types = [d for d in decls if isinstance(d, A.RecordDecl | A.UnionDecl)]
        for decl in types:
            if (
                decl.name in self.table.records
                or decl.name in self.table.unions
                or decl.name in PRIMS
            ):
                self.error(
                    decl.pos,
                    f"type `{decl.name}` is declared twice (or is built in)",
                    "give it another name",
                )
                continue
            if isinstance(decl, A.RecordDecl):
                self.table.records[decl.name] = RecordDef(decl.name, ())
            else:
                self.table.unions[decl.name] = UnionDef(decl.name, ())
                for variant in decl.variants:
                    if variant.name in self.table.ctors or variant.name in self.table.records:
                        self.error(
                            variant.pos,
                            f"constructor `{variant.name}` is declared twice",
                            "name each once",
                        )
                    self.table.ctors.setdefault(variant.name, decl.name)
        for decl in types:
            if isinstance(decl, A.RecordDecl) and not self.table.records[decl.name].fields:
                self.table.records[decl.name] = RecordDef(decl.name, self.fields(decl.fields))
            elif isinstance(decl, A.UnionDecl) and not self.table.unions[decl.name].variants:
                variants = tuple((v.name, self.fields(v.fields)) for v in decl.variants)
                self.table.unions[decl.name] = UnionDef(decl.name, variants)

    def fields(self, fields: tuple[A.FieldDecl, ...]) -> Fields:
        seen: set[str] = set()
        out: list[tuple[str, Ty]] = []
        for f in fields:
            if f.name in seen:
                self.error(f.pos, f"field `{f.name}` is declared twice", "name each field once")
            seen.add(f.name)
            out.append((f.name, self.resolve(f.type)))
        return tuple(out)

    def declare_values(self, decls: tuple[A.Decl, ...]) -> None:
        """Every top-level name with its type; duplicates and shadowed built-ins are errors."""
        self.globals["script"] = Named("Script")
        for decl in decls:
            if isinstance(decl, A.RecordDecl | A.UnionDecl | A.EvolveDecl | A.Let | A.McpCall):
                continue
            if decl.name in self.globals or decl.name in BUILTINS or decl.name in self.table.ctors:
                self.error(
                    decl.pos,
                    f"`{decl.name}` is declared twice (or is built in)",
                    "give it another name",
                )
                continue
            self.globals[decl.name] = self.signature(decl)
        for decl in decls:
            if isinstance(decl, A.Let):
                if decl.name in self.globals:
                    self.error(decl.pos, f"`{decl.name}` is declared twice", "give it another name")
                self.globals[decl.name] = self.let(decl, {})

    def signature(
        self,
        decl: A.GenomeDecl | A.FnDecl | A.PromptDecl | A.SourceDecl | A.TuneDecl | A.ServerDecl,
    ) -> Ty:
        if isinstance(decl, A.GenomeDecl):
            return Named("Genome")
        if isinstance(decl, A.ServerDecl):
            self.servers[decl.name] = decl
            return STR  # its value is its location: `mcp<T>(ops, "tool")` reads from it too
        if isinstance(decl, A.SourceDecl):
            self.sources.add(decl.name)
            return self.source(decl)
        if isinstance(decl, A.TuneDecl):
            return self.tune(decl)
        params = tuple((p.name, self.resolve(p.type)) for p in decl.params)
        kind = "prompt" if isinstance(decl, A.PromptDecl) else "fn"
        return FnT(params, self.resolve(decl.result), kind)

    def function(self, decl: A.FnDecl) -> None:
        """A function's body gives its declared result (or returns it)."""
        sig = self.globals.get(decl.name)
        if not isinstance(sig, FnT):
            return
        self.ret = sig.result
        scope = {**self.globals, **dict(sig.params)}
        body = decl.body
        if isinstance(body, A.Block):
            value = self.block(body, scope)
            if body.stmts and isinstance(body.stmts[-1], A.Return):
                value = sig.result
            where = body.stmts[-1].pos if body.stmts else body.pos
        else:
            value = self.expr(body, scope)
            where = body.pos
        if value == UNIT and sig.result != UNIT:
            self.error(
                where,
                f"{decl.name} must give {a(sig.result)}: this gives no value",
                "end the body with a value or a `return`",
            )
        elif value != ANY and not assignable(value, sig.result):
            self.error(
                where,
                f"{decl.name} gives {value}, declared {sig.result}",
                f"give {a(sig.result)}, or change the declared result",
            )
        self.ret = None


__all__ = ["Checked", "check", "check_source", "did_you_mean"]
