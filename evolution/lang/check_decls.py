"""The declarations' own rules: data sources, tune parameters, prompt blocks, campaigns.

Each is checked where it is written, so an error points at the source's type, the tune's
bound, the prompt's hole or the campaign's setting.
"""

from __future__ import annotations

from evolution.lang import ast as A
from evolution.lang.check_base import Scope, did_you_mean, literal
from evolution.lang.check_expr import ExprChecker
from evolution.lang.schema import (
    EVENTS,
    EVOLVE_KEYS,
    FORMATS,
    GENOME_KEYS,
    GENOME_REQUIRED,
    GROUPS,
    LOCATED,
)
from evolution.lang.types import (
    ANY,
    BOOL,
    FLOAT,
    INT,
    PROMPT_RESULTS,
    SCALARS,
    STR,
    FnT,
    ListT,
    MapT,
    Named,
    OptT,
    Ty,
    a,
    assignable,
)


class DeclChecker(ExprChecker):
    """Sources, tunes, prompts, genomes and campaigns."""

    # ------------------------------------------------------------ data sources

    def source(self, decl: A.SourceDecl) -> Ty:
        """The type a source's name has in the script (its data), after checking the declaration."""
        ref = decl.type
        kind, args = ref.name, ref.args
        if kind == "any" and not args:
            data: Ty = ANY
        elif kind in ("file", "http"):
            data = self._formatted(ref)
        elif kind in ("csv", "sql", "mcp") and len(args) == 1:
            row = self.resolve(args[0])
            if kind != "mcp":
                self.flat_record(args[0], row)
            data = row if kind == "mcp" else ListT(row)
        else:
            forms = "file<jsonl, T>, csv<T>, http<json, T>, sql<T>(url, query), mcp<T>(server, tool, args) or any"
            return self.error(
                ref.pos, f"`{ref}` is not a data source's type", f"write one of {forms}"
            )
        self._where(decl, kind)
        return OptT(data) if ref.optional else data

    def _formatted(self, ref: A.TypeRef) -> Ty:
        formats = FORMATS[ref.name]
        if len(ref.args) != 2 or ref.args[0].name not in formats:
            return self.error(
                ref.pos,
                f"`{ref}` needs a format and a type",
                f"write `{ref.name}<{formats[0]}, T>` (formats: {', '.join(formats)})",
            )
        fmt, row = ref.args[0].name, self.resolve(ref.args[1])
        if fmt == "csv":
            self.flat_record(ref.args[1], row)
        return row if fmt == "json" else ListT(row)

    def flat_record(self, ref: A.TypeRef, row: Ty) -> None:
        """A table's rows (csv, sql) are records of scalars (or ``any``)."""
        if row == ANY:
            return
        record = self.table.records.get(row.name) if isinstance(row, Named) else None
        if record is None:
            self.error(
                ref.pos,
                f"a table's rows are records, not {row}",
                "declare `record Row(col: T, ...)`",
            )
            return
        for name, ty in record.fields:
            inner = ty.inner if isinstance(ty, OptT) else ty
            if inner not in (*SCALARS, ANY):
                self.error(
                    ref.pos,
                    f"{row}.{name} is {ty}: a column holds a scalar",
                    "use int, float, str or bool fields",
                )
                return

    def _where(self, decl: A.SourceDecl, kind: str) -> None:
        if kind in LOCATED:
            if decl.location is None:
                self.error(
                    decl.pos,
                    f'{a(kind)} source needs `= "location"`',
                    f'write `source {decl.name}: {decl.type} = "..."`',
                )
                return
            got = self.expr(decl.location, self.globals)
            if not assignable(got, STR):
                self.error(
                    decl.location.pos, f"a location is a str, not {got}", "give a path or a URL"
                )
            where = literal(decl.location)
            if (
                kind == "http"
                and isinstance(where, str)
                and not where.startswith(("http://", "https://"))
            ):
                self.error(
                    decl.location.pos,
                    f"`{where}` is not an http(s) URL",
                    "write http://… or https://…",
                )
            return
        want: list[Ty] = [STR, STR] if kind == "sql" else [STR, STR, MapT(STR, ANY)]
        if decl.location is not None or not len(want) - (kind == "mcp") <= len(decl.args) <= len(
            want
        ):
            form = "sql<Row>(url, query)" if kind == "sql" else "mcp<T>(server, tool, args)"
            self.error(
                decl.pos,
                f"{a(kind)} source is written `{form}`",
                f"write `source {decl.name}: {form}`",
            )
            return
        for arg, ty in zip(decl.args, want, strict=False):
            got = self.expr(arg.value, self.globals)
            if not assignable(got, ty):
                self.error(arg.value.pos, f"this argument is {ty}, not {got}", f"give {a(ty)}")
        url = literal(decl.args[0].value)
        if (
            kind == "sql"
            and isinstance(url, str)
            and not url.startswith(("postgresql://", "sqlite:"))
        ):
            self.error(
                decl.args[0].pos,
                f"`{url}` is not a database URL",
                "write postgresql://… or sqlite:///path",
            )

    # ------------------------------------------------------------ tune parameters

    def tune(self, decl: A.TuneDecl) -> Ty:
        """A tune parameter's type, after checking its domain holds its default."""
        ty = self.resolve(decl.type)
        if ty not in (INT, FLOAT, STR, BOOL):
            return self.error(
                decl.type.pos,
                f"a tune parameter is int, float, str or bool, not {ty}",
                "tune a scalar",
            )
        if isinstance(decl.domain, A.Range):
            if ty not in (INT, FLOAT):
                return self.error(
                    decl.domain.pos,
                    f"a range tunes a number, not {a(ty)}",
                    'list the choices: ["a", "b"]',
                )
            low = self.numeric_literal(decl.domain.low, ty)
            high = self.numeric_literal(decl.domain.high, ty)
            default = self.numeric_literal(decl.default, ty)
            if low is None or high is None or default is None:
                return ty
            if low >= high:
                self.error(
                    decl.domain.pos,
                    f"the range {low}..{high} is empty",
                    "write low..high with low < high",
                )
            elif not low <= default <= high:
                self.error(
                    decl.default.pos,
                    f"the default {default} is outside {low}..{high}",
                    "pick a default inside the range",
                )
            return ty
        choices = [literal(i) for i in decl.domain.items]
        for item, value in zip(decl.domain.items, choices, strict=True):
            got = self.expr(item, {})
            if value is None or not assignable(got, ty):
                self.error(
                    item.pos, f"a choice of {a(ty)} tune is {a(ty)} literal", f"write {ty} values"
                )
        if not choices:
            self.error(
                decl.domain.pos, "a tune parameter needs choices", 'list at least two: ["a", "b"]'
            )
        if literal(decl.default) not in choices:
            self.error(
                decl.default.pos,
                "the default is not one of the choices",
                "pick the default among them",
            )
        return ty

    # ------------------------------------------------------------ prompt blocks

    def prompt(self, decl: A.PromptDecl, params: Scope, result: Ty) -> None:
        """A prompt's holes against its parameters; its result type must be parseable."""
        name = result.name if isinstance(result, Named) else str(result)
        record = self.table.records.get(name)
        user_record = record is not None and not record.builtin
        if result != ANY and name not in PROMPT_RESULTS and not user_record:
            self.error(
                decl.result.pos,
                f"a model's reply cannot be read as {a(result)}",
                "return Patch, Verdict, str, or a record of yours (the reply is read as its JSON)",
            )
        if (
            not decl.text.holes
            and not "".join(p for p in decl.text.parts if isinstance(p, str)).strip()
        ):
            self.error(
                decl.text.pos, "the prompt says nothing", "write the instructions for the model"
            )
        self.string(decl.text, {**self.globals, **params})

    # ------------------------------------------------------------ genomes and campaigns

    def genome(self, decl: A.GenomeDecl) -> None:
        if decl.path is not None:
            if not decl.path.endswith(".toml"):
                self.error(
                    decl.pos,
                    f"`{decl.path}` is not a genome.toml",
                    'point at the manifest: "genomes/x/genome.toml"',
                )
            return
        seen = self.settings(decl.settings, GENOME_KEYS, "genome", allow_handlers=False)
        missing = [k for k in GENOME_REQUIRED if k not in seen]
        if missing:
            self.error(
                decl.pos,
                f"genome {decl.name} misses {', '.join(missing)}",
                "set each (docs/genome-format.md)",
            )
        direction = seen.get("direction")
        if direction is not None:
            self.direction(direction)

    def evolve(self, decl: A.EvolveDecl, genomes: set[str]) -> None:
        if decl.genome not in genomes:
            self.error(
                decl.pos,
                f"unknown genome `{decl.genome}`{did_you_mean(decl.genome, genomes)}",
                f'declare it: `genome {decl.genome} from "path/genome.toml"`',
            )
        seen = self.settings(decl.settings, EVOLVE_KEYS, "evolve", allow_handlers=True)
        prompt = seen.get("prompt")
        if prompt is not None:
            got = self.expr(prompt, self.globals)
            if got != ANY and not (
                isinstance(got, FnT) and got.kind == "prompt" and len(got.params) == 1
            ):
                self.error(
                    prompt.pos,
                    f"`prompt` names a prompt block of one parameter, not {got}",
                    "write `prompt = improve`",
                )
        source = seen.get("input")
        if source is not None and not (isinstance(source, A.Name) and source.name in self.sources):
            self.error(
                source.pos, "`input` names a data source", "write `input = NAME` of a `source`"
            )
        for key in ("cycles", "candidates"):
            value = literal(seen.get(key))
            if isinstance(value, int) and value < 1:
                self.error(seen[key].pos, f"{key} is at least 1", f"set {key} = 1 or more")

    def settings(
        self,
        items: tuple[A.SettingItem, ...],
        keys: dict[str, Ty],
        where: str,
        *,
        allow_handlers: bool,
    ) -> dict[str, A.Expr]:
        """Check ``key = value`` lines, groups and handlers; the values by key."""
        seen: dict[str, A.Expr] = {}
        names: set[str] = set()
        for item in items:
            label = item.event if isinstance(item, A.Handler) else item.name
            if not isinstance(item, A.Handler) and label in names:
                self.error(item.pos, f"`{label}` is set twice", "set each key once")
            names.add(label)
            if isinstance(item, A.Handler):
                self.handler(item) if allow_handlers else self.error(
                    item.pos, f"{a(where)} block has no handlers", "put `on` in `evolve`"
                )
            elif isinstance(item, A.SettingGroup):
                group = GROUPS.get(item.name) if allow_handlers else None
                if group is None:
                    self.error(
                        item.pos,
                        f"unknown group `{item.name}` in {where}{did_you_mean(item.name, GROUPS)}",
                        f"groups: {', '.join(GROUPS)}",
                    )
                    continue
                inner = self.settings(item.settings, group, item.name, allow_handlers=False)
                if "direction" in inner:
                    self.direction(inner["direction"])
                repeats = literal(inner["repeats"]) if "repeats" in inner else None
                if item.name == "tuning" and isinstance(repeats, int) and repeats < 2:
                    self.error(
                        inner["repeats"].pos,
                        f"tuning: repeats = {repeats}: an interval needs at least 2 repeats",
                        "set `tuning { repeats = 3 }` (or more)",
                    )
            elif item.name not in keys:
                self.error(
                    item.pos,
                    f"unknown setting `{item.name}` in {where}{did_you_mean(item.name, keys)}",
                    f"settings: {', '.join(keys)}",
                )
            else:
                seen[item.name] = item.value
                if keys[item.name] != ANY:
                    got = self.expr(item.value, self.globals)
                    if not assignable(got, keys[item.name]):
                        self.error(
                            item.value.pos,
                            f"`{item.name}` is {keys[item.name]}, not {got}",
                            f"give a {keys[item.name]}",
                        )
        return seen

    def direction(self, value: A.Expr) -> None:
        if literal(value) not in ("minimize", "maximize"):
            self.error(
                value.pos, 'direction is "minimize" or "maximize"', 'write direction = "minimize"'
            )

    def handler(self, item: A.Handler) -> None:
        event = EVENTS.get(item.event)
        if event is None:
            self.error(
                item.pos,
                f"unknown event `{item.event}`{did_you_mean(item.event, EVENTS)}",
                f"events: {', '.join(EVENTS)}",
            )
            return
        if len(item.params) != 1:
            self.error(
                item.pos,
                f"`on {item.event}` takes one parameter",
                f"write `on {item.event}(x: {event})`",
            )
            return
        param = item.params[0]
        declared = self.resolve(param.type)
        if declared != event and declared != ANY:
            self.error(
                param.type.pos,
                f"`on {item.event}` hands in {a(event)}, not {declared}",
                f"write `{param.name}: {event}`",
            )
        self.ret = None
        self.block(item.body, {**self.globals, param.name: event})
