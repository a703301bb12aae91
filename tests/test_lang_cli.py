"""`tars check FILE.tars` on the shipped examples (accepted) and on 25 broken scripts.

Each broken script has one mistake; its row below says where (line:column) and what
the message must say.  The check goes through the real command (typer's runner), so
the printed caret line and the exit code are tested, not only the checker.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app

ROOT = Path(__file__).resolve().parents[1]
INVALID = Path(__file__).parent / "data" / "scripts" / "invalid"
runner = CliRunner()

#: script -> (line, column, a fragment of the message)
EXPECTED = {
    "01_missing_paren": (1, 18, "unexpected `->`"),
    "02_bad_character": (2, 11, "unexpected character '$'"),
    "03_unclosed_string": (1, 16, "unexpected character '\"'"),
    "04_unknown_type": (3, 10, "unknown type `Integer`"),
    "05_missing_constructor": (4, 3, "misses Broken"),
    "06_wrong_hole": (3, 8, "Hotspot has no field `cod` (did you mean `code`?)"),
    "07_optional_field": (2, 13, "`.id` read on a Version?, which may be none"),
    "08_tune_default_outside": (1, 32, "the default 9 is outside 1..8"),
    "09_tune_empty_range": (1, 26, "the range 2.0..1.0 is empty"),
    "10_prompt_result": (1, 29, "a model's reply cannot be read as a map<str, int>"),
    "11_source_format": (2, 14, "`file<xml, Row>` needs a format and a type"),
    "12_unknown_name": (2, 15, "unknown name `totl` (did you mean `total`?)"),
    "13_argument_type": (2, 16, "double's `x` is int, not str"),
    "14_unknown_field": (2, 28, "Row has no field `cout`"),
    "15_guard_not_bool": (5, 18, "a guard is a bool, not float"),
    "16_canary_steps": (5, 25, "canary steps [10, 5, 100] are not rising"),
    "17_unknown_genome": (3, 1, "unknown genome `logstat` (did you mean `logstats`?)"),
    "18_unknown_setting": (5, 3, "unknown setting `candidtes`"),
    "19_result_type": (3, 3, "name gives str, declared int"),
    "20_csv_nested": (2, 19, "Cell.xs is list<int>: a column holds a scalar"),
    "21_pattern_arity": (5, 5, "`Faster` has 1 field(s), the pattern gives 2"),
    "22_handler_type": (4, 17, "`on verdict` hands in a Verdict, not Rollout"),
    "23_bad_hole": (1, 22, "unexpected end of the hole"),
    "24_unknown_tool": (2, 18, "server `ops` has no tool `rollbak` (did you mean `rollback`?)"),
    "25_unknown_server": (3, 8, "unknown MCP server `opz` (did you mean `ops`?)"),
    "26_one_repeat": (5, 22, "tuning: repeats = 1: an interval needs at least 2 repeats"),
}


def check(path: Path) -> tuple[int, str, str]:
    result = runner.invoke(app, ["check", str(path)])
    return result.exit_code, result.stdout, result.stderr


def test_every_invalid_script_has_a_row() -> None:
    assert sorted(p.stem for p in INVALID.glob("*.tars")) == sorted(EXPECTED)
    assert len(EXPECTED) >= 20


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_an_invalid_script_gives_its_error_at_its_place(name: str) -> None:
    line, column, fragment = EXPECTED[name]
    path = INVALID / f"{name}.tars"
    code, out, err = check(path)
    assert code == 1, out + err
    assert "ok:" not in out
    first = err.splitlines()[0]
    assert first.startswith(f"{path}:{line}:{column}: error: "), err
    assert fragment in first, err
    assert "1 error(s)" in err, err  # one mistake, one error: nothing cascades
    # the caret sits under the column, below the line's own text
    text = path.read_text().splitlines()[line - 1]
    shown = err.splitlines()[1]
    caret = err.splitlines()[2]
    assert shown.endswith(text.expandtabs(1)), err
    assert caret.index("|") == shown.index("|")
    assert caret.index("^") == caret.index("|") + 1 + column
    assert "fix:" in err


@pytest.mark.parametrize(
    "example", sorted((ROOT / "examples").glob("*.tars")), ids=lambda p: p.stem
)
def test_the_shipped_examples_check(example: Path) -> None:
    code, out, err = check(example)
    assert code == 0, err
    assert out.startswith("ok: ") and "blocks" in out


def test_the_examples_cover_the_four_of_the_issue() -> None:
    names = {p.stem for p in (ROOT / "examples").glob("*.tars")}
    assert {"evolve_demo", "typed_source", "deploy_on_gain", "tune_self"} <= names
    code, out, _ = check(ROOT / "examples" / "tune_self.tars")
    assert code == 0 and "3 tune parameters" in out


def test_a_missing_genome_manifest_is_an_error_at_its_declaration(tmp_path: Path) -> None:
    script = tmp_path / "s.tars"
    script.write_text('# nothing here\ngenome g from "nowhere/genome.toml"\n')
    code, _, err = check(script)
    assert code == 1
    assert f"{script}:2:1: error: no genome manifest at nowhere/genome.toml" in err


def test_a_missing_script_is_one_line(tmp_path: Path) -> None:
    code, _, err = check(tmp_path / "absent.tars")
    assert code == 1
    assert "no script at" in err and "Traceback" not in err


def test_every_error_of_a_script_is_printed(tmp_path: Path) -> None:
    script = tmp_path / "two.tars"
    script.write_text("record R(a: Nope)\nlet x = y\n")
    code, _, err = check(script)
    assert code == 1
    assert f"{script}:1:13:" in err and f"{script}:2:9:" in err and "2 error(s)" in err
