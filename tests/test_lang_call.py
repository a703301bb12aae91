"""`call SERVER.TOOL(...)`: an MCP tool called for its effect, against a real `tars mcp --store`
server each script starts over stdio; typed results, tool errors, unknown tools, and the
attack of a result that does not fit the type the script declared.  The ones that start a
server are marked slow (a campaign, then a `tars run` and a server each: 8-25 s apiece)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langkit import tars

from evolution.lang.checker import check_source

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "data" / "tiny"

TYPES = (
    "record Node(version: str, parent: str?, head: bool)\n"
    "record Tree(genome: str, head: str, versions: list<Node>)\n"
)


def server(store: Path, work: Path) -> str:
    return f"{sys.executable} -m cli.main mcp --store {store} --workdir {work}"


class Ran:
    def __init__(self, store: Path, folder: Path, out: str) -> None:
        self.store, self.folder, self.out = store, folder, out

    def run(self, body: str) -> tuple[int, str, str, Path]:
        path = self.folder / "s.tars"
        path.write_text(body, encoding="utf-8")
        code, out, err = tars("run", str(path), "--store", str(self.folder / "own.db"))
        return code, out, err, path

    def lineage(self) -> str:
        code, out, err = tars("log", "lineage", "--store", str(self.store), "--genome", "tiny")
        assert code == 0, err
        return out


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ran]:
    """A campaign on the tiny genome whose `on done` handler matches on the typed lineage the
    MCP server gives and, in a match arm, rolls the adopted version back through the server."""
    folder = tmp_path_factory.mktemp("call")
    store = folder / "store.db"
    body = (
        f'genome tiny from "{TINY}/genome.toml"\n'
        f'server ops(lineage, rollback) = "{server(store, folder / "mcp")}"\n'
        + TYPES
        + "evolve tiny {\n  cycles = 1\n  candidates = 1\n"
        "  on done(g: Genome) {\n"
        "    match call<Tree> ops.lineage(genome=g.name) {\n"
        "      t if len(t.versions) > 1 -> call ops.rollback(genome=g.name, "
        'to=t.versions[0].version, reason="undone by the script")\n'
        '      t -> notify "only {len(t.versions)} version(s)"\n'
        "    }\n"
        "    let after: Tree = call ops.lineage(genome=g.name)\n"
        '    notify "head now {after.head}, first {after.versions[0].version}"\n'
        "  }\n}\n"
    )
    path = folder / "campaign.tars"
    path.write_text(body, encoding="utf-8")
    code, out, err = tars("run", str(path), "--store", str(store), "--workdir", str(folder / "w"))
    assert code == 0, out + err
    yield Ran(store, folder, out)


@pytest.mark.slow  # each runs `tars run` and a `tars mcp` server: 8-20 s on 2 shared cores
def test_a_handler_s_match_arm_acts_through_the_server(ran: Ran) -> None:
    assert "only" not in ran.out, ran.out  # the cycle adopted a version: the first arm ran
    line = next(x for x in ran.out.splitlines() if x.startswith("head now "))
    head, first = line.removeprefix("head now ").split(", first ")
    assert head == first, ran.out  # the rollback happened, read back typed
    assert "undone by the script" in tars("log", "ls", "--store", str(ran.store))[1]


@pytest.mark.slow  # each runs `tars run` and a `tars mcp` server: 8-20 s on 2 shared cores
def test_top_level_calls_run_in_order_typed(ran: Ran) -> None:
    starts = ran.folder / "starts.txt"
    ops = f"sh -c 'echo started >> {starts}; exec {server(ran.store, ran.folder / 'mcp2')}'"
    code, out, err, path = ran.run(
        f'server ops = "{ops}"\n' + TYPES + 'let t: Tree = call ops.lineage(genome="tiny")\n'
        'call ops.rollback(genome=t.genome, to=t.versions[1].version, reason="again")\n'
        'let back = call<Tree> ops.lineage(genome="tiny")\n'
        "let check = 1 / (if back.head == t.versions[1].version { 0 } else { 1 })\n"
    )
    assert code == 1 and "division by zero" in err, out + err  # the second rollback landed
    assert f"{path}:7:" in err
    assert starts.read_text().splitlines() == ["started"]  # three calls, one server started


@pytest.mark.slow  # each runs `tars run` and a `tars mcp` server: 8-20 s on 2 shared cores
def test_a_tool_error_is_said_at_the_call_with_server_tool_and_message(ran: Ran) -> None:
    code, out, err, path = ran.run(
        f'server ops = "{server(ran.store, ran.folder / "mcp3")}"\n'
        "fn undo(to: str) -> int {\n"
        '  call ops.rollback(genome="tiny", to=to, reason="x")\n  1\n}\n'
        'let k = undo("not-a-version")\n'
    )
    assert code == 1, out + err
    first = err.splitlines()[0]
    assert first.startswith(f"{path}:3:3: error: call ops.rollback: "), err
    assert "argument 'to'" in err, err  # the tool's own message


@pytest.mark.slow  # each runs `tars run` and a `tars mcp` server: 8-20 s on 2 shared cores
def test_a_result_that_does_not_fit_the_declared_type_is_refused(ran: Ran) -> None:
    wrong = TYPES.replace("head: str, versions", "head: int, versions")
    code, out, err, path = ran.run(
        f'server ops = "{server(ran.store, ran.folder / "mcp4")}"\n'
        + wrong
        + 'let t: Tree = call ops.lineage(genome="tiny")\n'
        "let n = t.head + 1\n"
    )
    assert code == 1, out + err
    assert f"{path}:4:15: error: call ops.lineage: the result does not fit Tree" in err, err
    assert "field `head`: expected int" in err, err
    deep = TYPES.replace("head: bool)", "head: int)")
    code, out, err, _ = ran.run(
        f'server ops = "{server(ran.store, ran.folder / "mcp4")}"\n'
        + deep
        + 'let t: Tree = call ops.lineage(genome="tiny")\n'
    )
    assert code == 1 and "head" in err and "expected int, found" in err, err


@pytest.mark.slow  # each runs `tars run` and a `tars mcp` server: 8-20 s on 2 shared cores
def test_a_server_held_in_a_str_is_found_when_run(ran: Ran) -> None:
    code, out, err, path = ran.run(
        f'let srv = "{server(ran.store, ran.folder / "mcp5")}"\n'
        'let t = call srv.lineag(genome="tiny")\n'
    )
    assert code == 1, out + err
    assert err.startswith(f"{path}:2:9: error: call srv.lineag: "), err
    assert "has no tool 'lineag'" in err and "lineage" in err, err
    loose = ran.run(
        f'let srv = "{server(ran.store, ran.folder / "mcp5")}"\n'
        'let t = call srv.lineage(genome="tiny")\nlet n = 1 / (len(t.versions) - 2)\n'
    )
    assert loose[0] == 1 and "division by zero" in loose[2], loose  # loose data, read as is


def test_the_checker_knows_declared_servers_and_their_tools() -> None:
    def errors(text: str) -> list[str]:
        return [f"{e.line}:{e.column} {e.message}" for e in check_source(text).errors]

    ops = 'server ops(lineage, rollback) = "tars mcp --store s.db"\n'
    assert errors(ops + TYPES + 'let t: Tree = call ops.lineage(genome="g", type=1)\n') == []
    assert errors(ops + 'let t = call ops.lineage("g")\n') == [
        "2:26 an MCP tool's arguments are named"
    ]
    assert errors(ops + "let t = call ops.lineage(a=1, a=2)\n") == [
        "2:31 argument `a` is given twice"
    ]
    assert errors(ops + "let t = call<Tre> ops.lineage()\n")[0].startswith(
        "2:14 unknown type `Tre`"
    )
    assert errors(ops + "let n = 1\nlet t = call n.x()\n") == ["3:14 `n` is an int, not a server"]
    assert errors('server ops(a, a) = "x"\n') == ["1:1 tool `a` is listed twice"]
    assert errors("server ops = 3\n") == ["1:14 a server is a command or a URL (a str), not int"]
    # typed by the let: a field the declared type lacks is an error, as for any record
    found = errors(ops + TYPES + "let t: Tree = call ops.lineage()\nlet x = t.nope\n")
    assert [f.split(" (did")[0] for f in found] == ["5:11 Tree has no field `nope`"]
    # a script that improves itself reruns its campaign per trial: a call would act again
    improving = (
        'genome g from "g/genome.toml"\n' + ops + "let a = call ops.lineage()\n"
        "evolve g {\n  improve_self = true\n  on done(x: Genome) {\n"
        "    match 1 { _ -> call ops.rollback(genome=x.name) }\n  }\n}\n"
    )
    found = errors(improving)
    assert [f.split(" `call")[0] for f in found] == ["3:9", "7:20"], found
    assert "every tune trial would call it again" in found[0] and "line 5" in found[0]
    assert errors(improving.replace("improve_self = true", "improve_self = false")) == []
    # keywords are names after `.` and as an argument's or a field's name, nowhere else
    named = 'record R(type: str, genome: str?)\nlet r = R(type="a", genome=none)\nlet t = r.type\n'
    assert errors(named) == []
    assert errors("let type = 1\n")[0].startswith("1:5 unexpected")
    assert errors("let x = [1, type]\n")[0].startswith("1:13 unexpected")


def test_sessions_keep_one_server_and_close_it_with_their_thread(tmp_path: Path) -> None:
    """In process: two calls, one `tars mcp` started; close() ends the server and the
    loop's thread (nothing is left for the next test)."""
    import threading

    from evolution.errors import TransportError
    from runtime.lang.mcp_client import Sessions

    starts = tmp_path / "starts.txt"
    store = tmp_path / "empty.db"
    from events.store import GenomeStore

    GenomeStore.open(f"sqlite:///{store}").close()  # a store with no genome
    command = f"sh -c 'echo $$ >> {starts}; exec {server(store, tmp_path / 'mcp')}'"
    sessions = Sessions(tmp_path)
    try:
        assert sessions.call(command, "genomes", {}) == {"genomes": []}
        with pytest.raises(TransportError, match="has no tool 'genome'"):
            sessions.call(command, "genome", {})
        with pytest.raises(TransportError, match="the MCP tool 'lineage' failed"):
            sessions.call(command, "lineage", {"genome": "nothing"})
        assert sessions.call(command, "genomes", {}) == {"genomes": []}
    finally:
        sessions.close()
    pids = starts.read_text().split()
    assert len(pids) == 1  # four calls, one server
    assert not any(t.name == "mcp-client" for t in threading.enumerate())
    assert (
        not Path(f"/proc/{pids[0]}").exists()
        or "zombie" in Path(f"/proc/{pids[0]}/status").read_text().lower()
    )


@pytest.mark.slow  # two `tars run`s, each starting a server: ~10-20 s on 2 shared cores
def test_a_type_the_output_schema_cannot_give_is_refused_before_the_tool_acts(
    tmp_path: Path,
) -> None:
    marks = tmp_path / "marks.txt"
    head = (
        f'server m(mark) = "{sys.executable} {ROOT / "tests" / "data" / "mcp_marks.py"} {marks}"\n'
        "record Done(count: int, name: str)\nrecord Wrong(count: str, name: str)\n"
        "record Missing(count: int, label: str, note: str?)\n"
        'let a: Done = call m.mark(name="one")\n'
    )
    path = tmp_path / "s.tars"
    for wrong, message in (
        ("Wrong", "Wrong.count is str, the tool's output schema gives integer"),
        ("Missing", "Missing needs field `label`, which the tool's output schema does not give"),
    ):
        path.write_text(head + f'let b: {wrong} = call m.mark(name="two")\n', encoding="utf-8")
        code, out, err = tars("run", str(path), "--store", str(tmp_path / "own.db"))
        assert code == 1, out + err
        column = len(f"let b: {wrong} = ") + 1
        assert f"{path}:6:{column}: error: call m.mark: {message}" in err, err
        assert "the tool was not called" in err
    assert marks.read_text().split() == ["one", "one"]  # each run marked once: `two` never


def test_schema_problem_reads_only_what_an_object_schema_says() -> None:
    from evolution.lang.types import INT, Named
    from evolution.lang.values import schema_problem

    checked = check_source("record Done(count: int, name: str, note: str?)\n")
    table = checked.table
    done = Named("Done")
    schema = {
        "type": "object",
        "properties": {"count": {"type": "integer"}, "name": {"type": "string"}},
    }
    assert schema_problem(schema, done, table) is None  # the optional `note` may be missing
    wrapped = {"properties": {"result": {"type": "integer"}}}
    assert schema_problem(wrapped, done, table) is None  # a wrapped scalar: left to the result
    assert schema_problem(None, done, table) is None  # no schema: nothing to compare
    assert schema_problem(schema, INT, table) is None  # only records are compared
    bad = {"properties": {"count": {"type": "string"}, "name": {"type": "string"}}}
    assert schema_problem(bad, done, table) == (
        "Done.count is int, the tool's output schema gives string"
    )
    nullable = {"properties": {"count": {"anyOf": [{"type": "integer"}]}, "name": {}}}
    assert schema_problem(nullable, done, table) is None  # no plain `type`: not compared


class Calls:
    """A host recording what `call` hands it (the evaluator's side, pure; the real host
    and servers are the slow tests above)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, str, dict[str, Any], str]] = []

    def call(self, server: Any, tool: str, args: dict[str, Any], ty: Any, pos: Any) -> Any:
        self.calls.append((server, tool, args, str(ty)))
        return {"genome": args.get("genome", "?"), "head": "ab", "versions": []}

    def action(self, kind: str, value: Any, pos: Any) -> None:
        self.calls.append((kind, value, {}, ""))


def test_the_evaluator_hands_each_call_its_server_arguments_and_type() -> None:
    from evolution.lang.eval import Interpreter, Server

    text = (
        'server ops(lineage, rollback) = "tars mcp --store {1 + 1}.db"\n'
        + TYPES
        + "record P(a: int)\n"
        'let t: Tree = call ops.lineage(genome="g")\n'
        'call ops.rollback(genome=t.genome, to=t.head, reason="r {t.head}", p=P(3))\n'
        "fn via(srv: str) -> int {\n  let x = call srv.lineage(type=[1, 2])\n  1\n}\n"
        'let k = via("other --flag")\n'
    )
    checked = check_source(text, "t.tars")
    assert checked.ok, [e.render() for e in checked.errors]
    host = Calls()
    Interpreter(checked, host).start()  # type: ignore[arg-type]
    tools = ("lineage", "rollback")
    assert host.calls == [
        (Server("ops", "tars mcp --store 2.db", tools), "lineage", {"genome": "g"}, "Tree"),
        (
            Server("ops", "tars mcp --store 2.db", tools),
            "rollback",
            {"genome": "g", "to": "ab", "reason": "r ab", "p": {"type": "P", "a": 3}},
            "any",
        ),
        (Server("srv", "other --flag", None), "lineage", {"type": [1, 2]}, "any"),
    ]
