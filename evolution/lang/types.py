"""The types of the TARS language, the domain's built-in records, and assignability.

Records and unions are nominal: a type names its declaration, and the fields live in a
:class:`TypeTable`, so records may refer to each other (and to themselves) in any order.
The domain's types (Genome, Version, Candidate, Verdict, Rollout, Patch, Hotspot) are
built-in records with the fields a script may read; the interpreter fills them from the
log and the engine, so these field lists are its contract too.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Prim:
    """``int float str bool none any unit``; ``unit`` is "no value" (an action, a mixed match)."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class ListT:
    elem: Ty

    def __str__(self) -> str:
        return f"list<{self.elem}>"


@dataclass(frozen=True, slots=True)
class MapT:
    key: Ty
    value: Ty

    def __str__(self) -> str:
        return f"map<{self.key}, {self.value}>"


@dataclass(frozen=True, slots=True)
class OptT:
    """``T?``: a T or ``none``; its fields are read only after a check."""

    inner: Ty

    def __str__(self) -> str:
        return f"{self.inner}?"


@dataclass(frozen=True, slots=True)
class Named:
    """A record or a union, by name (fields and constructors are in the :class:`TypeTable`)."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class FnT:
    """A function, a prompt block or a built-in: ``kind`` says which."""

    params: tuple[tuple[str, Ty], ...]
    result: Ty
    kind: str = "fn"

    def __str__(self) -> str:
        inner = ", ".join(f"{n}: {t}" for n, t in self.params)
        return f"{self.kind}({inner}) -> {self.result}"


Ty = Prim | ListT | MapT | OptT | Named | FnT

INT, FLOAT, STR, BOOL = Prim("int"), Prim("float"), Prim("str"), Prim("bool")
NONE, ANY, UNIT = Prim("none"), Prim("any"), Prim("unit")
#: what a ``return`` gives where it stands: control never goes on, so it fits anything
NEVER = Prim("never")
PRIMS = {"int": INT, "float": FLOAT, "str": STR, "bool": BOOL, "any": ANY}
SCALARS = (INT, FLOAT, STR, BOOL)

Fields = tuple[tuple[str, Ty], ...]


@dataclass(frozen=True, slots=True)
class RecordDef:
    name: str
    fields: Fields
    builtin: bool = False

    def field(self, name: str) -> Ty | None:
        """The type of a field, or None when the record has no such field."""
        return next((t for n, t in self.fields if n == name), None)


@dataclass(frozen=True, slots=True)
class UnionDef:
    name: str
    variants: tuple[tuple[str, Fields], ...]

    def names(self) -> tuple[str, ...]:
        """The constructors' names, in declaration order."""
        return tuple(n for n, _ in self.variants)


@dataclass(slots=True)
class TypeTable:
    """Every record and union a script can name, and which union each constructor builds."""

    records: dict[str, RecordDef] = field(default_factory=dict)
    unions: dict[str, UnionDef] = field(default_factory=dict)
    ctors: dict[str, str] = field(default_factory=dict)

    def ctor_fields(self, ctor: str) -> Fields:
        """The fields of a union constructor (known to exist)."""
        union = self.unions[self.ctors[ctor]]
        return dict(union.variants)[ctor]


def _fields(**kinds: Ty) -> Fields:
    return tuple(kinds.items())


VERSION = Named("Version")
PATCH = Named("Patch")
CANDIDATE = Named("Candidate")

#: The domain's records, as a script sees them (read-only; the interpreter fills them).
DOMAIN: dict[str, Fields] = {
    "Genome": _fields(
        name=STR, path=STR, metric=STR, direction=STR, sources=ListT(STR), head=VERSION
    ),
    "Version": _fields(id=STR, parent=OptT(STR), fitness=OptT(FLOAT), message=STR),
    "Patch": _fields(diff=STR, files=ListT(STR), lines=INT),
    "Hotspot": _fields(
        file=STR, function=STR, line=INT, code=STR, kind=STR, evidence=STR, share=FLOAT
    ),
    "Candidate": _fields(id=STR, genome=STR, parent=STR, mutator=STR, function=STR, patch=PATCH),
    "Verdict": _fields(
        candidate=CANDIDATE,
        accepted=BOOL,
        held=BOOL,
        gain=FLOAT,
        low=FLOAT,
        high=FLOAT,
        reason=STR,
        version=OptT(VERSION),
    ),
    "Rollout": _fields(genome=STR, version=STR, step=INT, share=FLOAT, state=STR, reason=STR),
    # the script's own structure (introspection; the value is the built-in `script`)
    "Param": _fields(name=STR, type=STR),
    "BlockInfo": _fields(kind=STR, name=STR, line=INT, params=ListT(Named("Param")), result=STR),
    "PromptText": _fields(name=STR, text=STR, holes=ListT(STR), result=STR, line=INT),
    "TuneParam": _fields(
        name=STR, type=STR, low=OptT(STR), high=OptT(STR), choices=ListT(STR), default=STR
    ),
    "Script": _fields(
        file=STR,
        blocks=ListT(Named("BlockInfo")),
        prompts=ListT(Named("PromptText")),
        tunes=ListT(Named("TuneParam")),
        # the log's verdicts on the script's own tune trials (`tars run`, improve_self)
        history=ListT(Named("Verdict")),
    ),
}

#: Result types the interpreter can parse a model's reply into (besides a user record).
PROMPT_RESULTS = ("Patch", "Verdict", "str")


def new_table() -> TypeTable:
    """A table holding the domain's records; the checker adds the script's own."""
    table = TypeTable()
    for name, fields in DOMAIN.items():
        table.records[name] = RecordDef(name, fields, builtin=True)
    return table


def assignable(src: Ty, dst: Ty) -> bool:
    """May a value of type ``src`` be used where ``dst`` is expected?

    ``any`` goes both ways (a loose source's data); an int is a float; a T or ``none`` is a
    ``T?``; an empty list or map (element ``any``) fits any list or map.
    """
    if src in (dst, NEVER) or ANY in (src, dst):
        return True
    if src == INT and dst == FLOAT:
        return True
    if isinstance(dst, OptT):
        return src == NONE or assignable(src.inner if isinstance(src, OptT) else src, dst.inner)
    if isinstance(src, ListT) and isinstance(dst, ListT):
        return assignable(src.elem, dst.elem)
    if isinstance(src, MapT) and isinstance(dst, MapT):
        return assignable(src.key, dst.key) and assignable(src.value, dst.value)
    if isinstance(src, FnT) and isinstance(dst, FnT):
        return len(src.params) == len(dst.params) and assignable(src.result, dst.result)
    return False


def join(a: Ty, b: Ty) -> Ty | None:
    """The one type two branches' values share (for ``if`` and ``match``), or None."""
    if a == NEVER:
        return b
    if assignable(a, b):
        return b
    if assignable(b, a):
        return a
    if a == NONE:
        return OptT(b)
    if b == NONE:
        return OptT(a)
    return None


def numeric(ty: Ty) -> bool:
    """An int or a float (or ``any``)."""
    return ty in (INT, FLOAT, ANY)


def a(ty: object) -> str:
    """``a str``, ``an int``: a type with its article, for messages."""
    text = str(ty)
    return f"{'an' if text[:1] in 'aeiouAEIOU' else 'a'} {text}"
