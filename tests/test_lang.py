"""The TARS language's parser and checker, on their own (pure: text in, tree and errors out).

Grammar: a script of every construct parses, every node knows its place, broken syntax
is a ScriptError at the right place and Lark's own errors never leak (random text
included).  Checker: each rule of docs/language.md, with a script that breaks it and
one that keeps it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evolution.errors import ScriptError, TarsError
from evolution.lang import ast as A
from evolution.lang.checker import check_source
from evolution.lang.parser import parse
from evolution.lang.types import ANY, INT, STR, ListT, MapT, Named, OptT

EVERY = Path(__file__).parent / "data" / "scripts" / "every_construct.tars"


def nodes(value: object) -> list[object]:
    """Every AST node under ``value`` (dataclasses, through tuples)."""
    found: list[object] = []
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        found.append(value)
        for f in dataclasses.fields(value):
            found += nodes(getattr(value, f.name))
    elif isinstance(value, tuple):
        for item in value:
            found += nodes(item)
    return found


def errors(text: str) -> list[str]:
    """``line:column message`` of each error the checker finds."""
    return [f"{e.line}:{e.column} {e.message}" for e in check_source(text, "t.tars").errors]


def ok(text: str) -> None:
    assert errors(text) == []


# ---------------------------------------------------------------- grammar


def test_a_script_of_every_construct_parses_and_checks() -> None:
    text = EVERY.read_text()
    program = parse(text, "every.tars")
    kinds = {type(n).__name__ for n in nodes(program.decls)}
    for kind in (
        "GenomeDecl", "RecordDecl", "UnionDecl", "Variant", "FnDecl", "PromptDecl",
        "SourceDecl", "TuneDecl", "Range", "EvolveDecl", "Setting", "SettingGroup",
        "Handler", "Let", "Return", "Deploy", "Notify", "Stop", "If", "Match", "Arm",
        "CtorPat", "NamePat", "WildcardPat", "Call", "Arg", "Field", "BinOp", "UnOp",
        "ListLit", "MapLit", "Str", "IntLit", "FloatLit", "NoneLit", "TypeRef",
    ):  # fmt: skip
        assert kind in kinds, kind
    checked = check_source(text, "every.tars")
    assert checked.ok, [e.render() for e in checked.errors]


def test_every_node_carries_its_file_line_and_column() -> None:
    text = EVERY.read_text()
    lines = text.splitlines()
    for node in nodes(parse(text, "every.tars").decls):
        pos = node.pos  # type: ignore[attr-defined]
        assert pos.file == "every.tars"
        assert 1 <= pos.line <= len(lines) and 1 <= pos.column <= len(lines[pos.line - 1])


def test_positions_point_at_the_words() -> None:
    program = parse("let a = 1\n\nfn f(x: int) -> int {\n  x +  a\n}\n", "p.tars")
    fn = program.decls[1]
    assert isinstance(fn, A.FnDecl) and fn.pos == A.Pos("p.tars", 3, 1)
    assert fn.params[0].type.pos == A.Pos("p.tars", 3, 9)
    body = fn.body
    assert isinstance(body, A.Block)
    add = body.stmts[0]
    assert isinstance(add, A.BinOp) and isinstance(add.right, A.Name)
    assert add.right.pos == A.Pos("p.tars", 4, 8)


def test_a_prompt_s_holes_have_their_place_in_the_script() -> None:
    program = parse('prompt p(h: Hotspot) -> Patch """\nfirst\n  then {h.code} and {{x}}\n"""\n')
    prompt = program.decls[0]
    assert isinstance(prompt, A.PromptDecl)
    hole = prompt.text.holes[0]
    assert isinstance(hole, A.Field) and hole.name == "code"
    assert (hole.obj.pos.line, hole.obj.pos.column) == (3, 9)
    assert "".join(p for p in prompt.text.parts if isinstance(p, str)).endswith(" and {x}\n")
    assert prompt.raw == "\nfirst\n  then {h.code} and {{x}}\n"


def test_newlines_inside_brackets_and_before_bars_do_not_end_a_line() -> None:
    program = parse("type T =\n  | A\n  | B(x: int,\n       y: int)\nlet l = [1,\n  2]\n")
    union = program.decls[0]
    assert isinstance(union, A.UnionDecl) and [v.name for v in union.variants] == ["A", "B"]


def test_maps_lists_and_optionals_parse() -> None:
    program = parse('let m: map<str, int?> = ["a": 1, "b": none]\nlet e = [:]\nlet l = []\n')
    m = program.decls[0]
    assert isinstance(m, A.Let) and isinstance(m.value, A.MapLit) and len(m.value.entries) == 2
    assert m.type is not None and m.type.args[1].optional


@pytest.mark.parametrize(
    ("text", "where", "fragment"),
    [
        ("let x = ", (1, 8), "unexpected end of the script"),
        ("fn f( -> int = 1", (1, 7), "unexpected `->`"),
        ("record R(a: int", (1, 16), "unexpected end of the script"),
        ("let x = 1 2", (1, 11), "unexpected a number '2'"),
        ("match", (1, 1), "unexpected `match`"),
        ('let s = "a } b"', (1, 12), "a `}` closes no hole"),
        ('let s = "{}"', (1, 10), "an empty hole"),
        ("let s = 3 @ 4", (1, 11), "unexpected character '@'"),
        ('let s = "a {b.c"', (1, 12), "hole is not closed"),
        ('genome g from "x{y}.toml"', (1, 15), "a genome's path has no {holes}"),
        ("fn f() -> int {\n  deploy 3\n}", (2, 3), "deploy needs a strategy"),
    ],
)
def test_syntax_errors_are_script_errors_at_their_place(
    text: str, where: tuple[int, int], fragment: str
) -> None:
    with pytest.raises(ScriptError) as caught:
        parse(text, "s.tars")
    assert (caught.value.line, caught.value.column) == where, caught.value.render()
    assert fragment in caught.value.message
    assert caught.value.hint
    assert isinstance(caught.value, TarsError)


def test_render_shows_the_line_and_a_caret() -> None:
    with pytest.raises(ScriptError) as caught:
        parse("let a = 1\nlet b = a ! 2\n", "r.tars")
    assert caught.value.render().splitlines()[:3] == [
        "r.tars:2:11: error: unexpected character '!'",
        " 2 | let b = a ! 2",
        "   |           ^",
    ]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='abfgnlmtyeirscpo(){}[]<>:=,.?|"#-+*/ 0123456789\n\t{}_', max_size=80))
def test_random_text_gives_a_program_or_a_script_error_never_a_lark_error(text: str) -> None:
    try:
        checked = check_source(text, "fuzz.tars")
    except ScriptError:  # pragma: no cover - check_source returns them
        raise AssertionError("check_source raised instead of returning the error") from None
    for error in checked.errors:
        assert isinstance(error, ScriptError) and error.line >= 1 and error.column >= 1
        error.render()


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from([
    "let x = 1", "fn f(a: int) -> int = a", "type T = A | B(v: int)", "record R(a: int?)",
    "tune t: int in 1..3 = 2", 'source s: any = "x"', "let y = match x { _ -> 1 }",
    "let z = if true { 1 } else { 2 }", 'let w = "{x} and {x + 1}"',
]), max_size=6))  # fmt: skip
def test_well_formed_lines_in_any_order_parse(lines: list[str]) -> None:
    program = parse("\n".join(lines), "gen.tars")
    assert len(program.decls) == len(lines)


# ---------------------------------------------------------------- checker

UNION = "type Outcome = Faster(gain: float) | Same | Broken(reason: str)\n"


def test_a_match_missing_constructors_names_them() -> None:
    got = errors(UNION + "fn f(o: Outcome) -> int {\n  match o {\n    Same -> 1\n  }\n}\n")
    assert got == ["3:3 this match on Outcome misses Faster, Broken"]


def test_a_guarded_arm_covers_nothing_and_a_wildcard_covers_the_rest() -> None:
    guarded = "fn f(o: Outcome) -> int {\n  match o {\n    Faster(g) if g > 1.5 -> 1\n    Same -> 2\n    Broken(r) -> 3\n  }\n}\n"
    assert errors(UNION + guarded) == ["3:3 this match on Outcome misses Faster"]
    ok(
        UNION
        + "fn f(o: Outcome) -> int {\n  match o {\n    Faster(g) if g > 1.5 -> 1\n    _ -> 2\n  }\n}\n"
    )


def test_an_arm_after_a_catch_all_is_never_reached() -> None:
    got = errors(
        UNION + "fn f(o: Outcome) -> int {\n  match o {\n    x -> 1\n    Same -> 2\n  }\n}\n"
    )
    assert got == ["5:5 this arm is never reached"]


def test_bools_and_optionals_are_matched_exhaustively() -> None:
    assert errors("fn f(b: bool) -> int {\n  match b {\n    true -> 1\n  }\n}\n") == [
        "2:3 this match on bool misses false"
    ]
    narrowed = 'fn f(v: Version?) -> str {\n  match v {\n    none -> "-"\n    x -> x.id\n  }\n}\n'
    ok(narrowed)
    assert errors("fn f(v: Version?) -> str {\n  match v {\n    x -> x.id\n  }\n}\n") == [
        "3:12 `.id` read on a Version?, which may be none"
    ]  # a name catches none too: it stays optional unless a `none` arm came first


def test_an_int_match_needs_a_catch_all() -> None:
    assert errors("fn f(n: int) -> int {\n  match n {\n    1 -> 1\n  }\n}\n") == [
        "2:3 this match on int has no arm for every value"
    ]


def test_patterns_are_checked_against_the_subject() -> None:
    text = (
        UNION
        + 'type Other = Nope\nfn f(o: Outcome) -> int {\n  match o {\n    Nope -> 1\n    "x" -> 2\n    _ -> 3\n  }\n}\n'
    )
    got = errors(text)
    assert "5:5 `Nope` builds an Other, the subject is Outcome" in got
    assert "6:5 a str pattern cannot match an Outcome" in got


def test_optionals_are_read_only_after_a_check() -> None:
    assert errors("fn f(v: Verdict) -> str = v.version.id\n") == [
        "1:37 `.id` read on a Version?, which may be none"
    ]
    ok('fn f(v: Verdict) -> str {\n  let w = v.version\n  if w != none { w.id } else { "-" }\n}\n')
    ok('fn f(v: Verdict) -> str {\n  let w = v.version\n  if w == none { "-" } else { w.id }\n}\n')
    ok('fn f(v: Verdict) -> bool {\n  let w = v.version\n  w != none and w.id == "x"\n}\n')
    ok("fn f(v: Version) -> float = v.fitness ?? 0.0\n")
    assert errors('fn f(v: Version) -> float = v.fitness ?? "none"\n') == [
        "1:42 the fallback of a float? is a float, not str"
    ]


def test_records_are_built_with_their_fields() -> None:
    base = "record Row(name: str, count: int, note: str?)\n"
    ok(base + 'let r = Row("a", count=2)\nlet n = r.count + 1\n')
    assert errors(base + 'let r = Row(name="a")\n') == ["2:9 Row needs `count` (int)"]
    assert errors(base + 'let r = Row(name="a", count="2")\n') == [
        "2:29 Row's `count` is int, not str"
    ]
    assert errors(base + 'let r = Row("a", 1, "n", 4)\n') == ["2:26 Row takes no 4 arguments"]


def test_constructors_build_their_union() -> None:
    ok(UNION + "let o: Outcome = Faster(1.5)\nlet p: Outcome = Same\n")
    assert errors(UNION + "let o = Faster\n") == ["2:9 `Faster` needs its fields (gain: float)"]
    assert errors(UNION + "let o: int = Same\n") == ["2:14 `o` is declared int but given Outcome"]


def test_prompt_holes_are_typed_against_the_parameters() -> None:
    ok('prompt p(h: Hotspot, n: int) -> Patch """{h.code} {n + 1} {h.line}"""\n')
    assert errors('prompt p(h: Hotspot) -> Patch """x {g.code}"""\n') == ["1:37 unknown name `g`"]
    assert errors('fn f() -> int = 1\nprompt p(h: Hotspot) -> Patch """x {f}"""\n') == [
        "2:37 a hole shows a value, not fn() -> int"
    ]


@pytest.mark.parametrize(
    ("result", "accepted"),
    [("Patch", True), ("Verdict", True), ("str", True), ("Mine", True), ("int", False),
     ("Choice", False), ("list<Patch>", False), ("Hotspot", False)],
)  # fmt: skip
def test_a_prompt_gives_a_type_a_reply_can_be_read_into(result: str, accepted: bool) -> None:
    text = f'record Mine(a: int)\ntype Choice = X | Y\nprompt p(h: Hotspot) -> {result} """go"""\n'
    assert (errors(text) == []) is accepted, errors(text)


def test_data_sources_give_their_data_s_type() -> None:
    text = (
        "record Row(a: int, b: str?)\n"
        'source f: file<jsonl, Row> = "x.jsonl"\n'
        'source j: file<json, Row> = "x.json"\n'
        'source c: csv<Row> = "x.csv"\n'
        'source h: http<json, Row> = "https://x/y"\n'
        'source q: sql<Row>("postgresql://localhost/db", "select a, b from t")\n'
        'source m: mcp<Row>("server", "tool", ["k": 1])\n'
        'source l: any = "x"\n'
    )
    checked = check_source(text)
    assert checked.ok, [e.render() for e in checked.errors]
    g = checked.globals
    assert (
        g["f"] == ListT(Named("Row")) and g["j"] == Named("Row") and g["c"] == ListT(Named("Row"))
    )
    assert g["h"] == Named("Row") and g["q"] == ListT(Named("Row")) and g["m"] == Named("Row")
    assert g["l"] == ANY


@pytest.mark.parametrize(
    ("decl", "fragment"),
    [
        ('source s: http<json, Row> = "ftp://x"', "not an http(s) URL"),
        ('source s: sql<Row> = "x"', "a sql source is written `sql<Row>(url, query)`"),
        ('source s: sql<Row>("mysql://x", "select 1")', "not a database URL"),
        ('source s: csv<Row>("a", "b")', 'a csv source needs `= "location"`'),
        ('source s: rss<Row> = "x"', "is not a data source's type"),
        ('source s: file<jsonl, Nope> = "x"', "unknown type `Nope`"),
        ("let x: file<jsonl, Row> = 1", "is a data source's type"),
    ],
)
def test_malformed_sources_are_errors(decl: str, fragment: str) -> None:
    got = errors("record Row(a: int)\n" + decl + "\n")
    assert len(got) == 1 and fragment in got[0], got


@pytest.mark.parametrize(
    ("decl", "fragment"),
    [
        ("tune n: int in 1..8 = 0", "the default 0 is outside 1..8"),
        ("tune n: int in 1.5..8 = 2", "1.5 is not an int"),
        ("tune n: int in 5..5 = 5", "the range 5..5 is empty"),
        ('tune s: str in ["a", "b"] = "c"', "the default is not one of the choices"),
        ("tune s: str in 1..2 = 1", "a range tunes a number, not a str"),
        ("tune s: list<int> in 1..2 = 1", "a tune parameter is int, float, str or bool"),
        ('tune s: str in ["a", 2] = "a"', "a choice of a str tune is a str literal"),
    ],
)
def test_tune_ranges_hold_their_default(decl: str, fragment: str) -> None:
    got = errors(decl + "\n")
    assert len(got) == 1 and fragment in got[0], got


def test_tune_parameters_are_values_of_their_type() -> None:
    ok(
        "tune n: int in 1..8 = 2\ntune t: float in -1.0..1.0 = 0\nlet m: int = n * 2\nlet u: float = t\n"
    )
    assert errors("tune n: int in 1..8 = 2\nlet s: str = n\n") == [
        "2:14 `s` is declared str but given int"
    ]


def test_duplicates_and_built_ins_are_not_redeclared() -> None:
    got = errors(
        "fn f() -> int = 1\nfn f() -> int = 2\nrecord R(a: int, a: int)\nfn len() -> int = 1\n"
    )
    assert "2:1 `f` is declared twice (or is built in)" in got
    assert "3:18 field `a` is declared twice" in got
    assert "4:1 `len` is declared twice (or is built in)" in got


def test_operators_check_their_operands() -> None:
    got = errors(
        'let a = 1 + "x"\nlet b = not 3\nlet c = "a" < 2\nlet d = 1 in [1.5]\nlet e = [1, "x"]\n'
    )
    assert got == [
        "1:9 cannot add int and str",
        "2:13 `not` takes a bool, not int",
        "3:9 `<` compares numbers or strs, not str and int",
        "5:13 a list of int holds a str",
    ]
    ok(
        'let a = 1 + 2.5\nlet b = "a" + "b"\nlet c = [1] + [2]\nlet d = 2 in [1, 2]\nlet e = "a" in ["a": 1]\n'
    )


def test_functions_give_their_declared_result() -> None:
    assert errors('fn f() -> int {\n  notify "x"\n}\n') == [
        "2:3 f must give an int: this gives no value"
    ]
    assert errors('fn f(x: int) -> int {\n  if x > 1 {\n    return "no"\n  }\n  x\n}\n') == [
        "3:12 returns str, the function gives int"
    ]
    ok(
        "fn f(x: int) -> int {\n  if x > 1 {\n    return 1\n  }\n  return x\n}\nfn g() -> int = f(2)\n"
    )


def test_campaign_settings_handlers_and_deploys() -> None:
    head = 'genome g from "g/genome.toml"\nprompt p(h: Hotspot) -> Patch """{h.code}"""\n'
    ok(
        head
        + 'evolve g {\n  prompt = p\n  fitness { metric = "seconds"\n    direction = "minimize" }\n  on verdict(v: Verdict) {\n    deploy blue_green()\n  }\n}\n'
    )
    got = errors(
        head
        + 'evolve g {\n  prompt = 3\n  fitness { direction = "down" }\n  budget { x = 1 }\n  on finish(v: Verdict) { stop }\n  cycles = 0\n}\n'
    )
    assert got == [
        "4:12 `prompt` names a prompt block of one parameter, not int",
        '5:25 direction is "minimize" or "maximize"',
        "6:3 unknown group `budget` in evolve",
        "7:3 unknown event `finish`",
        "8:12 cycles is at least 1",
    ], got
    got = errors(
        head
        + "evolve g {\n  on verdict(v: Verdict) {\n    deploy rainbow()\n    deploy canary(steps=[1, 50])\n    notify 3\n  }\n}\n"
    )
    assert got == [
        "5:12 unknown deploy strategy `rainbow`",
        "6:25 canary steps [1, 50] are not rising percentages ending at 100",
        "7:12 a message is text, not int",
    ], got


def test_an_inline_genome_needs_its_keys() -> None:
    got = errors('genome g {\n  sources = ["a.py"]\n  direction = "sideways"\n}\n')
    assert got == [
        "1:1 genome g misses test, bench, metric",
        '3:15 direction is "minimize" or "maximize"',
    ]


def test_types_resolve_and_recursive_records_are_fine() -> None:
    checked = check_source(
        "record Node(value: int, next: Node?)\nlet m: map<str, list<int>> = [:]\n"
    )
    assert checked.ok
    assert checked.table.records["Node"].fields[1] == ("next", OptT(Named("Node")))
    assert checked.globals["m"] == MapT(STR, ListT(INT))
    assert errors("let m: map<list<int>, int> = [:]\n") == ["1:12 a map's key is list<int>"]


def test_the_checker_reports_the_script_s_structure() -> None:
    text = (
        "tune n: int in 1..8 = 2\n"
        'tune s: str in ["a", "b"] = "a"\n'
        'prompt p(h: Hotspot) -> Patch """do {h.code} with {n}"""\n'
        "fn f(x: int) -> int = x\n"
        "fn who() -> int = len(script.tunes)\n"
    )
    checked = check_source(text, "i.tars")
    assert checked.ok, checked.errors
    info = checked.info
    assert info is not None
    assert [(b.kind, b.name, b.line) for b in info.blocks] == [
        ("tune", "n", 1), ("tune", "s", 2), ("prompt", "p", 3), ("fn", "f", 4), ("fn", "who", 5),
    ]  # fmt: skip
    assert info.blocks[3].params == (("x", "int"),) and info.blocks[3].result == "int"
    assert (
        info.prompts[0].holes == ("h.code", "n") and info.prompts[0].text == "do {h.code} with {n}"
    )
    assert info.tunes[0][1:6] == ("int", "1", "8", (), "2")
    assert info.tunes[1].choices == ("a", "b") and info.tunes[1].default == "a"


def test_one_mistake_is_one_error() -> None:
    """A broken part is ``any`` afterwards, so its uses do not pile more errors on."""
    assert errors("let a = nope\nlet b = a.x + 1\nlet c = b.y\n") == ["1:9 unknown name `nope`"]


# ---------------------------------------------------------------- the documentation

DOC = Path(__file__).resolve().parents[1] / "docs" / "language.md"


def test_the_documented_grammar_is_the_grammar() -> None:
    from evolution.lang.grammar import GRAMMAR

    text = DOC.read_text()
    block = text[text.index("```lark\n") + len("```lark\n") :]
    assert block[: block.index("```")].strip() == GRAMMAR.strip()


def test_the_documented_script_checks() -> None:
    text = DOC.read_text()
    block = text[text.index("```tars\n") + len("```tars\n") :]
    checked = check_source(block[: block.index("```")], "doc.tars")
    assert checked.ok, [e.render() for e in checked.errors]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("let x = " + " + ".join(["1"] * 5000), "nests too deeply"),
        ("let x = " + "[" * 2000 + "]" * 2000, "nests too deeply"),
        ("let x = " + "7" * 5000, "a number of over 100 digits"),
        ("fn f(x: int) -> int = match x { -" + "9" * 200 + " -> 1\n _ -> 2 }", "over 100 digits"),
    ],
)
def test_hostile_scripts_are_errors_not_crashes(text: str, fragment: str) -> None:
    checked = check_source(text, "hostile.tars")
    assert len(checked.errors) == 1 and fragment in checked.errors[0].message


def test_arms_that_return_give_the_function_s_result() -> None:
    ok(
        UNION
        + "fn f(o: Outcome) -> int {\n  match o {\n    Same -> { return 1 }\n    _ -> 2\n  }\n}\n"
    )
    ok(UNION + "fn f(o: Outcome) -> int {\n  if o == Same { return 1 } else { return 2 }\n}\n")


def test_the_language_is_pure() -> None:
    """evolution/lang reads no file, socket or clock: the CLI and the interpreter hand text in."""
    import ast as python_ast

    impure = {
        "os",
        "socket",
        "time",
        "subprocess",
        "pathlib",
        "io",
        "threading",
        "datetime",
        "random",
        "shutil",
    }
    root = Path(__file__).resolve().parents[1] / "evolution" / "lang"
    for path in sorted(root.glob("*.py")):
        found: set[str] = set()
        for node in python_ast.walk(python_ast.parse(path.read_text())):
            if isinstance(node, python_ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, python_ast.ImportFrom) and node.module:
                found.add(node.module.split(".")[0])
        assert not found & impure, f"{path.name} imports {sorted(found & impure)}"
        assert "open(" not in path.read_text().replace("reopen(", ""), path.name
