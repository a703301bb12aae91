"""`tars run`: typed and loose sources read for real (files, SQLite, PostgreSQL, an MCP
server the test starts), a campaign on the tiny genome with its handlers, a prompt block
asked of the scripted model server, a notify webhook the test serves."""

from __future__ import annotations

import json
import re
import sqlite3
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from langkit import tars

from tests.llmkit import Turn, scripted_server

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "data" / "tiny"


def script(folder: Path, body: str) -> Path:
    path = folder / "s.tars"
    path.write_text(body, encoding="utf-8")
    return path


ROW = "record Row(word: str, n: int, w: float?)\n"


def test_jsonl_source_names_the_bad_line_and_field(tmp_path: Path) -> None:
    (tmp_path / "rows.jsonl").write_text('{"word": "a", "n": 1}\n{"word": "b", "n": "two"}\n')
    path = script(
        tmp_path, ROW + 'source rows: file<jsonl, Row> = "rows.jsonl"\nlet k = len(rows)\n'
    )
    code, _, err = tars("run", str(path), "--store", str(tmp_path / "s.db"))
    assert code == 1
    assert "line 2: field `n`: expected int, found 'two'" in err, err
    assert f"{path}:2:1" in err and "^" in err


def test_csv_json_and_loose_sources(tmp_path: Path) -> None:
    (tmp_path / "rows.csv").write_text("word,n,w\na,1,\nb,2,0.5\n")
    (tmp_path / "one.json").write_text('{"word": "c", "n": 3}')
    (tmp_path / "any.json").write_text('{"deep": {"k": [1, 2, 3]}}')
    path = script(
        tmp_path,
        ROW + 'source rows: file<csv, Row> = "rows.csv"\nsource one: file<json, Row> = "one.json"\n'
        'source loose: any = "any.json"\n'
        "let s = rows[1].w ?? 0.0\nlet k = len(loose.deep.k)\n"
        "let t = 1 / (len(rows) + k + one.n - 8)\n",
    )
    code, out, err = tars("run", str(path), "--store", str(tmp_path / "s.db"))
    assert code == 1 and "division by zero" in err, err  # 2 rows + 3 items + 3: all read, typed
    bad = tmp_path / "rows.csv"
    bad.write_text("word,n,w\na,1,\nb,x,0.5\n")
    code, _, err = tars("run", str(path), "--store", str(tmp_path / "s.db"))
    assert code == 1 and "row 2: field `n`: expected int, found 'x'" in err, err


def test_sql_sources_sqlite_and_postgres(tmp_path: Path, postgres_dsn: str) -> None:
    db = tmp_path / "d.db"
    with sqlite3.connect(db) as con:
        con.execute("create table t (word text, n integer, w real)")
        con.executemany("insert into t values (?, ?, ?)", [("a", 1, None), ("b", 2, 1.5)])
    import psycopg

    with psycopg.connect(postgres_dsn, autocommit=True) as con:
        con.execute("drop table if exists lang_t")
        con.execute("create table lang_t (word text, n integer, w double precision)")
        con.execute("insert into lang_t values ('a', 1, null), ('b', 2, 2.5), ('c', 3, 1.0)")
    path = script(
        tmp_path,
        ROW + f'source a: sql<Row>("sqlite:///{db}", "select word, n, w from t")\n'
        f'source b: sql<Row>("{postgres_dsn}", "select word, n, w from lang_t order by n")\n'
        "let total = len(a) + len(b)\nlet check = 1 / (total - 5)\n",
    )
    code, _, err = tars("run", str(path), "--store", str(tmp_path / "s.db"))
    assert code == 1 and "division by zero" in err, err  # 2 + 3 rows were read, typed
    bad = script(
        tmp_path,
        ROW
        + f'source a: sql<Row>("sqlite:///{db}", "select n as word, n, w from t")\nlet k = len(a)\n',
    )
    code, _, err = tars("run", str(bad), "--store", str(tmp_path / "s.db"))
    assert code == 1 and "row 1: field `word`: expected str, found 1" in err, err


def test_mcp_source_from_tars_own_server(tmp_path: Path) -> None:
    store = tmp_path / "store.db"
    code, _, err = tars(
        "evolve",
        "run",
        "--genome",
        str(TINY),
        "--store",
        str(store),
        "--cycles",
        "1",
        "--candidates",
        "1",
    )
    assert code == 0, err
    server = f"{sys.executable} -m cli.main mcp --store {store} --workdir {tmp_path / 'w'}"
    record = "record G(head: str, cycles: int)\nrecord Gs(genomes: list<G>)\n"
    path = script(
        tmp_path,
        record + f'source gs: mcp<Gs>("{server}", "genomes")\n'
        "let first = gs.genomes[0]\nlet c = 1 / (first.cycles - 1)\n",
    )
    code, _, err = tars("run", str(path), "--store", str(tmp_path / "s.db"))
    assert code == 1 and "division by zero" in err, err  # the typed result said cycles == 1
    wrong = script(
        tmp_path, record + f'source gs: mcp<Gs>("{server}", "genome")\nlet k = len(gs.genomes)\n'
    )
    code, _, err = tars("run", str(wrong), "--store", str(tmp_path / "s.db"))
    assert code == 1 and "has no tool 'genome'" in err and "genomes" in err, err


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, object]]]]:
    got: list[dict[str, object]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return None

        def do_POST(self) -> None:  # noqa: N802
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/hook", got
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_campaign_runs_cycles_and_handlers(
    tmp_path: Path, webhook: tuple[str, list[dict[str, object]]]
) -> None:
    url, got = webhook
    path = script(
        tmp_path,
        f'genome tiny from "{TINY}/genome.toml"\n'
        "evolve tiny {\n  cycles = 1\n  candidates = 2\n"
        "  on verdict(v: Verdict) {\n    if v.accepted { deploy canary(steps=[1, 50, 100]) }\n"
        '    notify "fn {v.candidate.function}"\n  }\n'
        '  on done(g: Genome) {\n    notify "{g.name} {len(history(g))}"\n  }\n}\n',
    )
    code, out, err = tars(
        "run",
        str(path),
        "--store",
        str(tmp_path / "s.db"),
        "--workdir",
        str(tmp_path / "w"),
        "--notify",
        url,
    )
    assert code == 0, out + err
    assert "would deploy tiny" in out and "canary(steps=[1, 50, 100])" in out
    assert "fn tiny/core.py:" in out, out  # the function the patch changed, from the log
    assert got and got[-1]["text"] == f"tiny {got[-1]['text'].split()[1]}"  # type: ignore[union-attr]
    assert int(str(got[-1]["text"]).split()[1]) >= 1  # the log's verdicts, read back
    assert got[0]["script"] == str(path) and got[0]["line"] == 7  # each notify, where it is


def test_a_plan_that_does_not_hold_is_an_error_at_the_deploy_on_one_node_too(
    tmp_path: Path,
) -> None:
    """A single node only says what would deploy, but checks the plan as a swarm does (a
    literal list is `tars check`'s; one held in a name is known only when run)."""
    path = script(
        tmp_path,
        f'genome tiny from "{TINY}/genome.toml"\n'
        "evolve tiny {\n  cycles = 1\n  candidates = 1\n"
        "  on done(g: Genome) {\n    let s = [50, 10]\n    deploy canary(steps=s)\n  }\n}\n",
    )
    code, out, err = tars(
        "run", str(path), "--store", str(tmp_path / "s.db"), "--workdir", str(tmp_path / "w")
    )
    assert code != 0
    assert f"{path}:7:5: error: deploy canary: steps [50, 10]" in out + err, out + err
    assert "would deploy" not in out


def test_prompt_reply_typed_and_mismatch_at_block(tmp_path: Path) -> None:
    with scripted_server() as server:
        (tmp_path / "llm.yml").write_text(
            f"models:\n  - name: scripted\n    endpoint: {server.url}\n    model: m\nretries: 0\nmax_requests: 12\n"
        )
        body = (
            f'genome tiny from "{TINY}/genome.toml"\nrecord Tip(title: str, score: float)\n'
            'prompt tip(w: str) -> Tip """Give a tip about {w} as JSON"""\n'
            'evolve tiny {\n  cycles = 1\n  candidates = 1\n  llm = "llm.yml"\n'
            '  on done(g: Genome) {\n    let t = tip(g.name)\n    notify "tip {t.title} {t.score}"\n  }\n}\n'
        )
        path = script(tmp_path, body)
        # the cycle's generator asks too (and refuses these replies): every turn is the same
        server.script(*[Turn(reply='```json\n{"title": "sets", "score": 2}\n```')] * 8)
        code, out, err = tars(
            "run", str(path), "--store", str(tmp_path / "s.db"), "--workdir", str(tmp_path / "w")
        )
        assert code == 0 and "tip sets 2.0" in out, out + err
        assert any("Give a tip about tiny" in r.prompt for r in server.received)
        server.turns.clear()
        server.script(*[Turn(reply='{"title": "no score"}')] * 8)
        (tmp_path / "llm.yml").write_text(
            (tmp_path / "llm.yml").read_text() + "cache: other.sqlite\n"
        )
        code, out, err = tars(
            "run", str(path), "--store", str(tmp_path / "s2.db"), "--workdir", str(tmp_path / "w2")
        )
        assert code == 1 and f"{path}:3:1" in err and "field `score`" in err, out + err


@pytest.mark.slow
def test_campaign_follows_a_swarm_ledger(tmp_path: Path) -> None:
    from tests.swarmkit import LocalSwarm

    swarm = LocalSwarm(tmp_path / "swarm", nodes=1)
    try:
        swarm.up()
        path = script(
            tmp_path,
            f'genome tiny from "{TINY}/genome.toml"\n'
            "evolve tiny {\n  cycles = 2\n"
            '  on verdict(v: Verdict) {\n    notify "verdict {v.candidate.mutator} {v.accepted}"\n  }\n'
            '  on done(g: Genome) {\n    notify "done {g.head.id}"\n  }\n}\n',
        )
        code, out, err = tars("run", str(path), "--config", str(swarm.config.path), "--wait", "240")
        assert code == 0, out + err
        assert out.count("verdict ") >= 2, out  # one per candidate of the two cycles followed
        done = [line for line in out.splitlines() if line.startswith("done ")]
        assert done and len(done[0].split()[1]) == 64, out  # the swarm's head, read back
    finally:
        swarm.down()


def test_mcp_client_over_http_with_a_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client against `tars mcp`'s streamable HTTP app behind its bearer gate."""
    import time

    import uvicorn

    from cli.mcp_http import http_app
    from cli.mcp_ops import Target
    from cli.mcp_server import build_server
    from events.store import GenomeStore
    from evolution.errors import TransportError
    from runtime.lang.mcp_client import call_tool, list_tools
    from runtime.ports import free_port

    GenomeStore.open(f"sqlite:///{tmp_path / 's.db'}").close()  # an empty store to serve
    port = free_port()
    app = http_app(
        build_server(Target(store=str(tmp_path / "s.db")), port=port), {"tok": "bob"}.get
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive()
            time.sleep(0.02)
        url = f"http://127.0.0.1:{port}/mcp"
        monkeypatch.delenv("TARS_MCP_TOKEN", raising=False)
        with pytest.raises(TransportError, match="cannot talk"):
            call_tool(url, "genomes", {}, tmp_path)  # no token: the gate refuses
        monkeypatch.setenv("TARS_MCP_TOKEN", "tok")
        assert "genomes" in {t.name for t in list_tools(url, tmp_path)}
        assert call_tool(url, "genomes", {}, tmp_path) == {"genomes": []}
        with pytest.raises(TransportError, match="failed: .*store"):
            call_tool(url, "lineage", {"genome": "nope"}, tmp_path)  # the tool's own error
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        assert not thread.is_alive()


def test_a_failing_handler_stops_with_every_recorded_cycle_whole(tmp_path: Path) -> None:
    from events.store import GenomeStore

    path = script(
        tmp_path,
        f'genome tiny from "{TINY}/genome.toml"\n'
        "evolve tiny {\n  cycles = 3\n  candidates = 1\n"
        '  on verdict(v: Verdict) {\n    let xs = [1]\n    notify "{xs[1]}"\n  }\n}\n',
    )
    code, out, err = tars(
        "run", str(path), "--store", str(tmp_path / "s.db"), "--workdir", str(tmp_path / "w")
    )
    assert code == 1 and "no item 1 (the value has 1 item(s))" in err and f"{path}:7:17" in err, (
        out + err
    )
    with GenomeStore.open(f"sqlite:///{tmp_path / 's.db'}", create=False) as store:
        assert store.head("tiny").cycles_completed == 1  # the first cycle whole, no second
        kinds = [e.type for e in store.log(genome="tiny")]
    assert kinds.count("CycleCompleted") == 1 and kinds[-1] == "CycleCompleted", kinds


def test_top_level_prompt_uses_the_campaign_model(tmp_path: Path) -> None:
    with scripted_server() as server:
        (tmp_path / "llm.yml").write_text(
            f"models:\n  - name: scripted\n    endpoint: {server.url}\n    model: m\nretries: 0\nmax_requests: 3\n"
        )
        path = script(
            tmp_path,
            f'genome tiny from "{TINY}/genome.toml"\n'
            'prompt name(n: int) -> str """Name {n} things"""\n'
            "let answer = name(3)\nlet k = 1 / (len(answer) - 5)\n"
            'evolve tiny {\n  llm = "llm.yml"\n  cycles = 1\n}\n',
        )
        server.script(Turn(reply="seven"))  # five letters: the division by zero proves the reply
        code, out, err = tars(
            "run", str(path), "--store", str(tmp_path / "s.db"), "--workdir", str(tmp_path / "w")
        )
    assert code == 1 and "division by zero" in err and f"{path}:4:" in err, out + err
    assert [r.prompt for r in server.received] == ["Name 3 things"]


def test_approve_rules_hold_a_big_gain_for_a_person(tmp_path: Path) -> None:
    from events.store import GenomeStore

    path = script(
        tmp_path,
        f'genome tiny from "{TINY}/genome.toml"\n'
        "evolve tiny {\n  cycles = 1\n  candidates = 1\n  approve {\n    above = 1.2\n  }\n"
        '  on verdict(v: Verdict) {\n    if v.held { notify "held {v.gain}" }\n  }\n}\n',
    )
    code, out, err = tars(
        "run", str(path), "--store", str(tmp_path / "s.db"), "--workdir", str(tmp_path / "w")
    )
    assert code == 0 and "held " in out, out + err
    with GenomeStore.open(f"sqlite:///{tmp_path / 's.db'}", create=False) as store:
        head = store.head("tiny")
        assert head.pending and head.versions_count == 1  # waiting for a person, not adopted


def test_http_sources_typed_and_loose(tmp_path: Path) -> None:
    bodies = {
        "/rows.jsonl": '{"word": "a", "n": 1}\n{"word": "b", "n": 2.5}\n',
        "/one.json": '{"word": "c", "n": 3}',
    }

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return None

        def do_GET(self) -> None:  # noqa: N802
            body = bodies.get(self.path)
            self.send_response(200 if body else 404)
            self.end_headers()
            self.wfile.write((body or "").encode())

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        good = script(
            tmp_path,
            ROW
            + f'source one: http<json, Row> = "{url}/one.json"\nsource loose: any = "{url}/rows.jsonl"\n'
            "let k = 1 / (one.n + len(loose) - 5)\n",
        )
        code, _, err = tars("run", str(good), "--store", str(tmp_path / "s.db"))
        assert code == 1 and "division by zero" in err, err  # 3 + 2 loose lines: both read
        bad = script(
            tmp_path,
            ROW + f'source rows: http<jsonl, Row> = "{url}/rows.jsonl"\nlet k = len(rows)\n',
        )
        code, _, err = tars("run", str(bad), "--store", str(tmp_path / "s.db"))
        assert code == 1 and "line 2: field `n`: expected int, found 2.5" in err, err
        gone = script(
            tmp_path, ROW + f'source rows: http<jsonl, Row> = "{url}/gone"\nlet k = len(rows)\n'
        )
        code, _, err = tars("run", str(gone), "--store", str(tmp_path / "s.db"))
        assert code == 1 and "404" in err and f"{gone}:2:1" in err, err
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_stop_ends_the_campaign_after_the_cycle(tmp_path: Path) -> None:
    from events.store import GenomeStore

    path = script(
        tmp_path,
        f'genome tiny from "{TINY}/genome.toml"\n'
        "evolve tiny {\n  cycles = 3\n  candidates = 1\n"
        '  on verdict(v: Verdict) {\n    stop "one is enough"\n  }\n}\n'
        "evolve tiny {\n  cycles = 1\n}\n",
    )
    code, out, err = tars(
        "run", str(path), "--store", str(tmp_path / "s.db"), "--workdir", str(tmp_path / "w")
    )
    assert code == 0 and "stop: one is enough" in out, out + err
    with GenomeStore.open(f"sqlite:///{tmp_path / 's.db'}", create=False) as store:
        assert store.head("tiny").cycles_completed == 1  # nor did the second campaign run


def test_an_engine_error_is_said_at_the_campaign(tmp_path: Path) -> None:
    (tmp_path / "llm.yml").write_text(
        "models:\n  - endpoint: http://127.0.0.1:9/v1\n    model: m\n"
    )
    path = script(
        tmp_path,
        f'genome tiny from "{TINY}/genome.toml"\n\nevolve tiny {{\n  llm = "llm.yml"\n}}\n',
    )
    code, out, err = tars(
        "run", str(path), "--store", str(tmp_path / "s.db"), "--workdir", str(tmp_path / "w")
    )
    assert code == 1 and f"{path}:3:1: error: campaign on `tiny`:" in err, out + err
    assert "no budget" in err and "fix:" in err


def test_script_reads_the_log_history_of_its_tune_runs(tmp_path: Path) -> None:
    from events.records import CandidateRecord
    from events.store import GenomeStore

    path = tmp_path / "my_tuned.tars"
    path.write_text(
        "tune n: int in 1..3 = 1\nlet runs = script.history\n"
        "let g = runs[0].gain\nlet r = runs[0].reason\nlet k = 1 / (len(runs) - 1)\n"
    )
    store = tmp_path / "s.db"
    code, _, err = tars("run", str(path), "--store", str(store))
    assert code == 1 and "no item 0 (the value has 0 item(s))" in err, err  # nothing yet
    with GenomeStore.open(f"sqlite:///{store}") as handle:
        handle.register("script-my-tuned", "[genome]\n", {"my_tuned.tars": "x"}, 1.5, "t")
        trial = CandidateRecord(
            "c1", "p", "", "tune", "tune", "reject", ["worse"], 0.9, None, None, True
        )
        handle.record_cycle("script-my-tuned", "t", evaluated=[trial], cycle=1)
    code, _, err = tars("run", str(path), "--store", str(store))
    assert code == 1 and "division by zero" in err and f"{path}:5:" in err, err  # one run read


def test_mutators_and_functions_narrow_the_plans(tmp_path: Path) -> None:
    from events.store import GenomeStore

    path = script(
        tmp_path,
        f'genome tiny from "{TINY}/genome.toml"\n'
        'evolve tiny {\n  cycles = 1\n  candidates = 2\n  mutators = ["memoize", "set_membership"]\n'
        '  functions = ["tiny.core.count_common"]\n'
        '  on verdict(v: Verdict) {\n    notify "seen {v.candidate.mutator} {v.candidate.function}"\n  }\n}\n',
    )
    code, out, err = tars(
        "run", str(path), "--store", str(tmp_path / "s.db"), "--workdir", str(tmp_path / "w")
    )
    assert code == 0, out + err
    seen = [line.split()[1:] for line in out.splitlines() if line.startswith("seen ")]
    assert seen, out
    for mutator, *functions in seen:
        assert mutator in ("memoize", "set_membership", "compose"), seen
        assert functions == ["tiny/core.py:count_common"], seen
    with GenomeStore.open(f"sqlite:///{tmp_path / 's.db'}", create=False) as store:
        rows = [e.data for e in store.log(genome="tiny") if e.type == "CandidateEvaluated"]
    assert len(rows) == len(seen)


def test_run_type_checks_first_with_the_errors_of_check(tmp_path: Path) -> None:
    bad = sorted((ROOT / "tests" / "data" / "scripts" / "invalid").glob("*.tars"))
    assert len(bad) >= 3
    for path in bad[:3]:
        code_check, _, err_check = tars("check", str(path))
        code_run, out, err_run = tars("run", str(path), "--store", str(tmp_path / "s.db"))
        assert code_check == code_run == 1 and err_run == err_check, (err_check, err_run)
        assert "ran" not in out
    assert not (tmp_path / "s.db").exists()  # nothing ran, nothing written


def test_limits_bound_each_candidate_run(tmp_path: Path) -> None:
    path = script(
        tmp_path,
        f'genome tiny from "{TINY}/genome.toml"\n'
        "evolve tiny {\n  cycles = 1\n  candidates = 1\n  limits {\n    wall_seconds = 0.05\n  }\n"
        '  on verdict(v: Verdict) {\n    notify "seen {v.accepted} {v.reason}"\n  }\n}\n',
    )
    code, out, err = tars(
        "run", str(path), "--store", str(tmp_path / "s.db"), "--workdir", str(tmp_path / "w")
    )
    assert code == 0 and "seen false" in out and "killed after 0.05 s wall time" in out, out + err


@pytest.mark.slow  # seven campaigns: the run, then the current values and the trial, 3 repeats each
def test_tune_adopts_a_better_value_as_a_version_rollback_undoes(tmp_path: Path) -> None:
    from events.store import GenomeStore

    path = tmp_path / "tuned.tars"
    original = (
        f'genome tiny from "{TINY}/genome.toml"\ntune n: int in 0..1 = 0\n'
        "evolve tiny {\n  cycles = 1\n  candidates = n\n  improve_self = true\n}\n"
    )
    path.write_text(original)
    store = tmp_path / "s.db"
    code, out, err = tars(
        "run", str(path), "--store", str(store), "--workdir", str(tmp_path / "w"), "--write"
    )
    assert code == 0 and "(seed 7): n=0: gain per cycle 1.0000" in out, out + err  # no candidate
    assert re.search(r"tune: n=1: proven: gain [0-9.]+× \(95% interval", out), out
    assert path.read_text() == original.replace("= 0\n", "= 1\n")  # the one line changed
    with GenomeStore.open(f"sqlite:///{store}", create=False) as handle:
        head = handle.head("script-tuned")
        assert head.versions_count == 2 and head.tree["tuned.tars"] == path.read_text()
        evaluated = [
            e.data for e in handle.log(genome="script-tuned") if e.type == "CandidateEvaluated"
        ]
        assert [e["verdict"] for e in evaluated] == [
            "adopt"
        ] and "-tune n: int in 0..1 = 0" in evaluated[0]["patch"]
        first = next(e.version for e in handle.log(genome="script-tuned") if e.type == "Registered")
    code, _, err = tars(
        "rollback", "--genome", "script-tuned", "--to", str(first)[:12], "--store", str(store)
    )
    assert code == 0, err
    with GenomeStore.open(f"sqlite:///{store}", create=False) as handle:
        assert handle.head("script-tuned").tree["tuned.tars"] == original
