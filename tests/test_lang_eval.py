"""The evaluator on its own (pure): values, functions, match with guards, holes, runtime errors."""

from __future__ import annotations

from typing import Any

import pytest

from evolution.errors import ScriptError
from evolution.lang import ast as A
from evolution.lang.checker import check_source
from evolution.lang.eval import Interpreter
from evolution.lang.replies import ReplyMismatch, read_reply
from evolution.lang.types import Named, new_table
from evolution.lang.values import Mismatch, Rec, conform


class Recorder:
    """A host that records the actions (the only world these scripts touch)."""

    def __init__(self) -> None:
        self.actions: list[tuple[str, Any]] = []

    def action(self, kind: str, value: Any, pos: A.Pos) -> None:
        self.actions.append((kind, value))


def run(src: str) -> tuple[Interpreter, Recorder]:
    checked = check_source(src, "t.tars")
    assert checked.ok, [e.render() for e in checked.errors]
    host = Recorder()
    interp = Interpreter(checked, host)  # type: ignore[arg-type]
    interp.start()
    return interp, host


PROGRAM = """
record P(x: int, y: int?)
type Shape = Circle(r: float) | Square(s: float) | Dot
fn area(s: Shape) -> float {
  match s {
    Circle(r) if r > 10.0 -> 0.0
    Circle(r) -> 3.0 * r * r
    Square(x) -> x * x
    Dot -> 0.0
  }
}
fn fact(n: int) -> int {
  if n <= 1 { return 1 }
  n * fact(n - 1)
}
let shapes = [Circle(1.0), Square(s=2.0), Dot, Circle(20.0)]
let areas = [area(shapes[0]), area(shapes[1]), area(shapes[2]), area(shapes[3])]
let p = P(1)
let m = ["a": 1, "b": 2]
let has = "b" in m
let msg = "p {p} f {fact(5)} m {m} y {p.y ?? 7} in {has} ok {true and not false}"
"""


def test_values_functions_match_and_holes() -> None:
    interp, _ = run(PROGRAM)
    assert interp.values["areas"] == [3.0, 4.0, 0.0, 0.0]  # the guard sent Circle(20) on
    assert interp.values["p"] == Rec("P", (("x", 1), ("y", None)))
    assert interp.values["msg"] == 'p P(x=1, y=none) f 120 m ["a": 1, "b": 2] y 7 in true ok true'


def test_actions_go_to_the_host_in_order() -> None:
    interp, host = run(
        "type O = Up(g: float) | Down\nfn act(o: O) -> int {\n  match o {\n"
        '    Up(g) if g > 1.5 -> deploy canary(steps=[1, 100])\n    Up(g) -> notify "small {g}"\n'
        '    Down -> stop "down"\n  }\n  0\n}\nlet a = act(Up(2.0))\nlet b = act(Up(1.2))\nlet c = act(Down)\n'
    )
    assert host.actions == [
        ("deploy", ("canary", {"steps": [1, 100]})),
        ("notify", "small 1.2"),
        ("stop", "down"),
    ]


@pytest.mark.parametrize(
    ("body", "line", "column", "words"),
    [
        ("let xs = [1, 2]\nlet y = xs[5]", 2, 12, "no item 5"),
        ("let z = 0\nlet y = 3 / z", 2, 13, "division by zero"),
        ('let m = ["a": 1]\nlet y = m["b"]', 2, 11, "no item b"),
    ],
)
def test_runtime_errors_name_the_place(body: str, line: int, column: int, words: str) -> None:
    with pytest.raises(ScriptError) as caught:
        run(body)
    error = caught.value
    assert (error.line, error.column) == (line, column), error.render()
    assert words in error.message and error.hint
    assert error.render().splitlines()[-2].strip().endswith("^")


def test_script_reads_its_own_structure() -> None:
    interp, _ = run(
        'tune n: int in 1..8 = 2\nprompt p(h: Hotspot) -> str """fix {h.code}"""\n'
        "let tunes = script.tunes\nlet first = script.prompts[0].text\n"
    )
    assert (
        interp.values["tunes"][0].get("name") == "n"
        and interp.values["tunes"][0].get("high") == "8"
    )
    assert "{h.code}" in interp.values["first"]


def test_conform_names_the_field() -> None:
    checked = check_source("record R(a: int, b: list<str>, c: float?)\n", "r.tars")
    table = checked.table
    assert conform({"a": 1, "b": ["x"]}, Named("R"), table) == Rec(
        "R", (("a", 1), ("b", ["x"]), ("c", None))
    )
    for bad, where in [({"a": "1", "b": []}, "a"), ({"a": 1, "b": [1]}, "b[0]"), ({"b": []}, "a")]:
        with pytest.raises(Mismatch) as caught:
            conform(bad, Named("R"), table)
        assert caught.value.where == where
    with pytest.raises(Mismatch):
        conform({"a": True, "b": []}, Named("R"), table)  # a bool is not an int


def test_reply_into_types() -> None:
    checked = check_source("record Tip(title: str, score: float)\n", "r.tars")
    assert read_reply(
        'sure:\n```json\n{"title": "x", "score": 2}\n```', Named("Tip"), checked.table
    ) == Rec("Tip", (("title", "x"), ("score", 2.0)))
    with pytest.raises(ReplyMismatch, match="score"):
        read_reply('{"title": "x"}', Named("Tip"), checked.table)
    with pytest.raises(ReplyMismatch, match="not a Patch"):
        read_reply("no blocks here", Named("Patch"), new_table())


TUNED = (
    "tune n: int in 1..3 = 1  # candidates\n"
    "tune t: float in 1.0..2.0 = 1.5\n"
    'tune s: str in ["a", "b \\"q\\""] = "a"\n'
    "tune b: bool in [true, false] = true\n"
)


def test_tune_trials_stay_in_their_domains() -> None:
    from evolution.lang.tune import trials

    checked = check_source(TUNED, "t.tars")
    assert checked.ok and checked.info is not None
    current: dict[str, int | float | str | bool] = {"n": 1, "t": 1.5, "s": "a", "b": True}
    found = trials(checked.info.tunes, current, seed=3, limit=50)
    moved = sorted((k, v) for values in found for k, v in values.items() if current[k] != v)
    assert moved == [("b", False), ("n", 2), ("s", 'b "q"'), ("t", 1.35), ("t", 1.65)]
    assert all(sum(values[k] != current[k] for k in current) == 1 for values in found)
    assert len(trials(checked.info.tunes, current, seed=3, limit=2)) == 2


def test_tune_rewrite_touches_only_the_defaults() -> None:
    from evolution.lang.tune import rewrite

    checked = check_source(TUNED, "t.tars")
    assert checked.program is not None
    text = rewrite(checked.program, {"n": 3, "s": 'b "q"', "b": False})
    assert text.splitlines() == [
        "tune n: int in 1..3 = 3  # candidates",
        "tune t: float in 1.0..2.0 = 1.5",
        'tune s: str in ["a", "b \\"q\\""] = "b \\"q\\""',
        "tune b: bool in [true, false] = false",
    ]
    again = check_source(text, "t.tars")  # still a valid script, with the new values
    assert again.ok and again.info is not None
    assert [t.default for t in again.info.tunes] == ["3", "1.5", 'b "q"', "false"]


def test_union_from_data_names_its_constructor() -> None:
    checked = check_source("type O = Faster(gain: float) | Same\n", "u.tars")
    union = Named("O")
    assert read_reply('{"type": "Faster", "gain": 2}', union, checked.table) == Rec(
        "Faster", (("gain", 2.0),)
    )
    assert conform({"type": "Same"}, union, checked.table) == Rec("Same", ())
    with pytest.raises(Mismatch, match="Faster | Same"):
        conform({"type": "Slower"}, union, checked.table)
