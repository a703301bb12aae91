"""The syntax tree of a `.tars` script: what the parser builds and the checker reads.

Every node is a frozen dataclass carrying its :class:`Pos` (file, line, column, all
1-based), so any later stage — the checker, the interpreter, a runtime error — can point
at the exact place in the script.  Nodes hold only syntax: names are not resolved here
(``Name("Same")`` may be a variable or a constructor), the checker decides.  The tree is
the contract between the parser, the checker and the interpreter: fields are added, never
renamed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class Pos(NamedTuple):
    """Where a node starts: the script's file name, its 1-based line and column."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


# ---------------------------------------------------------------- types as written


@dataclass(frozen=True, slots=True)
class TypeRef:
    """A type as written: ``int``, ``list<Row>``, ``file<jsonl, LogLine>``, ``Hotspot?``."""

    pos: Pos
    name: str
    args: tuple[TypeRef, ...] = ()
    optional: bool = False

    def __str__(self) -> str:
        inner = f"<{', '.join(str(a) for a in self.args)}>" if self.args else ""
        return f"{self.name}{inner}{'?' if self.optional else ''}"


# ---------------------------------------------------------------- expressions


@dataclass(frozen=True, slots=True)
class IntLit:
    pos: Pos
    value: int


@dataclass(frozen=True, slots=True)
class FloatLit:
    pos: Pos
    value: float


@dataclass(frozen=True, slots=True)
class BoolLit:
    pos: Pos
    value: bool


@dataclass(frozen=True, slots=True)
class NoneLit:
    pos: Pos


@dataclass(frozen=True, slots=True)
class Str:
    """A string, maybe interpolated: ``parts`` alternate literal text and ``{expr}`` holes.

    A prompt's text is a ``Str`` too; its holes are checked against the prompt's parameters.
    """

    pos: Pos
    parts: tuple[str | Expr, ...]

    @property
    def holes(self) -> tuple[Expr, ...]:
        """The interpolated expressions, in order."""
        return tuple(p for p in self.parts if not isinstance(p, str))


@dataclass(frozen=True, slots=True)
class Name:
    pos: Pos
    name: str


@dataclass(frozen=True, slots=True)
class Field:
    """``obj.name``: a record's field (never allowed on an optional without a check)."""

    pos: Pos
    obj: Expr
    name: str


@dataclass(frozen=True, slots=True)
class Arg:
    """One argument of a call: positional (``name`` is None) or ``name=value``."""

    pos: Pos
    name: str | None
    value: Expr


@dataclass(frozen=True, slots=True)
class Call:
    """``func(args)``: a function, a prompt block, a built-in or a constructor."""

    pos: Pos
    func: Expr
    args: tuple[Arg, ...]


@dataclass(frozen=True, slots=True)
class Index:
    pos: Pos
    obj: Expr
    index: Expr


@dataclass(frozen=True, slots=True)
class ListLit:
    pos: Pos
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class MapLit:
    """``["a": 1, "b": 2]`` (``[:]`` is the empty map)."""

    pos: Pos
    entries: tuple[tuple[Expr, Expr], ...]


@dataclass(frozen=True, slots=True)
class BinOp:
    """``left op right``; ``op`` is one of ``or and == != < <= > >= in ?? + - * / %``."""

    pos: Pos
    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class UnOp:
    """``-x`` or ``not x``."""

    pos: Pos
    op: str
    operand: Expr


@dataclass(frozen=True, slots=True)
class Block:
    """``{ stmt ... }``: its value is its last statement's, when that is an expression."""

    pos: Pos
    stmts: tuple[Stmt, ...]


@dataclass(frozen=True, slots=True)
class If:
    pos: Pos
    cond: Expr
    then: Block
    orelse: Block | If | None


# ---------------------------------------------------------------- patterns


@dataclass(frozen=True, slots=True)
class WildcardPat:
    """``_``: matches anything, binds nothing."""

    pos: Pos


@dataclass(frozen=True, slots=True)
class NamePat:
    """A bare name: a nullary constructor if one has that name, else a binding."""

    pos: Pos
    name: str


@dataclass(frozen=True, slots=True)
class CtorPat:
    """``Faster(g)``: a constructor with one sub-pattern per field."""

    pos: Pos
    name: str
    args: tuple[Pattern, ...]


@dataclass(frozen=True, slots=True)
class LitPat:
    """A literal: an int, float, string (no holes), ``true``, ``false`` or ``none``."""

    pos: Pos
    value: int | float | str | bool | None


@dataclass(frozen=True, slots=True)
class Arm:
    """``pattern [if guard] -> body``."""

    pos: Pos
    pattern: Pattern
    guard: Expr | None
    body: Expr | Block | Action


@dataclass(frozen=True, slots=True)
class Match:
    pos: Pos
    subject: Expr
    arms: tuple[Arm, ...]


# ---------------------------------------------------------------- statements


@dataclass(frozen=True, slots=True)
class Let:
    pos: Pos
    name: str
    type: TypeRef | None
    value: Expr


@dataclass(frozen=True, slots=True)
class Return:
    pos: Pos
    value: Expr | None


@dataclass(frozen=True, slots=True)
class Deploy:
    """``deploy canary(steps=[1, 10, 50, 100])`` or ``deploy blue_green()``."""

    pos: Pos
    strategy: Call


@dataclass(frozen=True, slots=True)
class Notify:
    """``notify "text {x}"``: a message to the people watching the run."""

    pos: Pos
    message: Expr


@dataclass(frozen=True, slots=True)
class Stop:
    """``stop ["reason"]``: ends the campaign after this cycle."""

    pos: Pos
    reason: Expr | None


# ---------------------------------------------------------------- declarations


@dataclass(frozen=True, slots=True)
class FieldDecl:
    """A field of a record or a union's constructor, or a parameter: ``name: Type``."""

    pos: Pos
    name: str
    type: TypeRef


@dataclass(frozen=True, slots=True)
class GenomeDecl:
    """``genome NAME from "path/genome.toml"`` (``path``) or ``genome NAME { key = value }``."""

    pos: Pos
    name: str
    path: str | None
    settings: tuple[SettingItem, ...] = ()


@dataclass(frozen=True, slots=True)
class RecordDecl:
    pos: Pos
    name: str
    fields: tuple[FieldDecl, ...]


@dataclass(frozen=True, slots=True)
class Variant:
    pos: Pos
    name: str
    fields: tuple[FieldDecl, ...]


@dataclass(frozen=True, slots=True)
class UnionDecl:
    """``type Outcome = Faster(gain: float) | Same | Broken(reason: str)``."""

    pos: Pos
    name: str
    variants: tuple[Variant, ...]


@dataclass(frozen=True, slots=True)
class FnDecl:
    """``fn name(params) -> T { ... }`` or ``fn name(params) -> T = expr``."""

    pos: Pos
    name: str
    params: tuple[FieldDecl, ...]
    result: TypeRef
    body: Block | Expr


@dataclass(frozen=True, slots=True)
class PromptDecl:
    """``prompt name(params) -> T \"\"\"text with {holes}\"\"\"``: instructions for a model.

    ``raw`` is the text as written (holes unexpanded), for introspection and diffs.
    """

    pos: Pos
    name: str
    params: tuple[FieldDecl, ...]
    result: TypeRef
    text: Str
    raw: str


@dataclass(frozen=True, slots=True)
class SourceDecl:
    """``source NAME: kind<...> = "location"`` or ``source NAME: sql<Row>(url, query)``."""

    pos: Pos
    name: str
    type: TypeRef
    location: Expr | None
    args: tuple[Arg, ...]


@dataclass(frozen=True, slots=True)
class Range:
    """``low..high``, both ends included."""

    pos: Pos
    low: Expr
    high: Expr


@dataclass(frozen=True, slots=True)
class TuneDecl:
    """``tune NAME: T in 1..8 = 2`` or ``tune NAME: str in ["a", "b"] = "a"``."""

    pos: Pos
    name: str
    type: TypeRef
    domain: Range | ListLit
    default: Expr


@dataclass(frozen=True, slots=True)
class Setting:
    """``key = value`` inside a ``genome`` or ``evolve`` block."""

    pos: Pos
    name: str
    value: Expr


@dataclass(frozen=True, slots=True)
class SettingGroup:
    """``key { key = value ... }``: a nested group (``fitness``, ``limits``, ``approve``)."""

    pos: Pos
    name: str
    settings: tuple[SettingItem, ...]


@dataclass(frozen=True, slots=True)
class Handler:
    """``on EVENT(param: T) { ... }`` inside ``evolve``: run when the event happens."""

    pos: Pos
    event: str
    params: tuple[FieldDecl, ...]
    body: Block


@dataclass(frozen=True, slots=True)
class EvolveDecl:
    """``evolve GENOME { settings, groups, handlers }``: one campaign on a declared genome."""

    pos: Pos
    genome: str
    settings: tuple[SettingItem, ...]


@dataclass(frozen=True, slots=True)
class ServerDecl:
    """``server NAME[(tool, ...)] = "command or URL"``: an MCP server a script calls.

    ``tools`` (None when not listed) are the tools the script may call on it, so a call of
    another is a check-time error; its value in the script is its location (a ``str``).
    """

    pos: Pos
    name: str
    tools: tuple[str, ...] | None
    location: Expr


@dataclass(frozen=True, slots=True)
class McpCall:
    """``call[<T>] SERVER.TOOL(name=value, ...)``: an MCP tool called for its effect.

    ``server`` is a ``server`` declaration's name (static) or a ``str`` value holding a
    command or URL (found when run); ``type`` the declared result (None: loose).
    """

    pos: Pos
    type: TypeRef | None
    server: Name
    tool: str
    tool_pos: Pos
    args: tuple[Arg, ...]


@dataclass(frozen=True, slots=True)
class Program:
    """A whole script: its declarations in order, and the text they came from."""

    file: str
    decls: tuple[Decl, ...]
    text: str


Expr = (
    IntLit
    | FloatLit
    | BoolLit
    | NoneLit
    | Str
    | Name
    | Field
    | Call
    | Index
    | ListLit
    | MapLit
    | BinOp
    | UnOp
    | If
    | Match
    | McpCall
)
Pattern = WildcardPat | NamePat | CtorPat | LitPat
Action = Deploy | Notify | Stop
Stmt = Let | Return | Deploy | Notify | Stop | Expr
SettingItem = Setting | SettingGroup | Handler
Decl = (
    GenomeDecl
    | RecordDecl
    | UnionDecl
    | FnDecl
    | PromptDecl
    | SourceDecl
    | TuneDecl
    | EvolveDecl
    | Let
    | ServerDecl
    | McpCall
)
