"""The dashboard over plain HTTP on a real three-node swarm: login, roles, CSRF, pages, live
events; login tokens; `tars log plot` (docs/dashboard.md)."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from dashkit import Client, Swarm, swarm_with_dashboard
from swarmkit import wait

from runtime.access_tokens import check_token, make_token, token_role, tokens_dir


@pytest.fixture(scope="module")
def swarm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swarm]:
    with swarm_with_dashboard(tmp_path_factory.mktemp("dash")) as running:
        yield running


def _admin(swarm: Swarm) -> Client:
    client = Client(swarm.host)
    assert client.login(swarm.config.keypair("admin")[1]) == 303
    return client


def test_tokens_keep_only_a_hash_and_check_in_every_case(tmp_path: Path) -> None:
    from swarmkit import TINY

    from cli.demo import write_cluster
    from runtime.config import load_cluster

    config = load_cluster(write_cluster(tmp_path, 1, TINY, 1, 1, 1, 1))
    token = make_token(config, "alice", role="viewer")
    other = make_token(config, "bob")
    stored = (tokens_dir(config) / "alice.json").read_text()
    assert token not in stored and "sha256" in stored
    assert (tokens_dir(config) / "alice.json").stat().st_mode & 0o077 == 0
    assert check_token(config, token) == "alice" and token_role(config, "alice") == "viewer"
    assert check_token(config, other) == "bob" and token_role(config, "bob") == "operator"
    for forged in ("", token[:-1], token + "x", token.upper(), stored, "sha256"):
        assert check_token(config, forged) is None, forged
    (tokens_dir(config) / "bob.json").write_text('{"name": "bob", "role": "god", "sha256": "x"}')
    assert check_token(config, other) is None  # a damaged record grants nothing
    from evolution.errors import ConfigError

    for bad in ("../x", "", "a/b", "x" * 70):
        with pytest.raises(ConfigError):
            make_token(config, bad)
    again = make_token(config, "alice", role="approver")  # a new token replaces the old one
    assert check_token(config, token) is None and check_token(config, again) == "alice"


def test_tars_keys_token_prints_the_token_once(tmp_path: Path) -> None:
    from swarmkit import TINY
    from typer.testing import CliRunner

    from cli.demo import write_cluster
    from cli.main import app
    from runtime.config import load_cluster

    path = write_cluster(tmp_path, 1, TINY, 1, 1, 1, 1)
    shown = CliRunner().invoke(app, ["keys", "--config", str(path), "--token", "ci", "--role", "viewer"])  # fmt: skip
    assert shown.exit_code == 0, shown.output
    token = next(line for line in shown.stdout.splitlines() if line.startswith("tars_"))
    assert check_token(load_cluster(path), token) == "ci"
    wrong = CliRunner().invoke(app, ["keys", "--config", str(path), "--token", "x", "--role", "root"])  # fmt: skip
    assert wrong.exit_code != 0 and "role" in wrong.output


def test_without_a_login_nothing_opens(swarm: Swarm) -> None:
    anonymous = Client(swarm.host)
    for path in ("/dashboard/", "/dashboard/log", "/dashboard/genome/svc", "/dashboard/genome/svc/plot.svg"):  # fmt: skip
        status, headers, _ = anonymous.request("GET", path)
        assert status == 302 and headers["location"] == "/dashboard/login", path
    for path in ("/dashboard/api/status", "/dashboard/events"):
        assert anonymous.request("GET", path)[0] == 401, path
    form = {"genome": "svc", "order": "abort", "csrf": "x"}
    assert anonymous.request("POST", "/dashboard/api/rollout", form)[0] == 401
    assert anonymous.request("POST", "/dashboard/login", {"secret": "guess"})[0] == 401
    assert anonymous.request("POST", "/dashboard/login", {"secret": ""})[0] == 401
    forged = Client(swarm.host)
    forged.cookie = "tars_session=made-up"
    assert forged.request("GET", "/dashboard/api/status")[0] == 401
    assert (
        anonymous.request("GET", "/dashboard/static/dash.css")[0] == 200
    )  # the login page's style
    assert anonymous.request("GET", "/dashboard/static/../auth.py")[0] in (302, 404)


def test_a_session_cookie_is_httponly_and_strict(swarm: Swarm) -> None:
    client = Client(swarm.host)
    status, headers, _ = client.request("POST", "/dashboard/login", {"secret": swarm.config.keypair("admin")[1]})  # fmt: skip
    assert status == 303
    cookie = headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/dashboard" in cookie
    page = client.request("GET", "/dashboard/")
    assert "script-src 'self'" in page[1]["content-security-policy"]


def test_actions_need_the_csrf_token_and_a_role_that_may(swarm: Swarm) -> None:
    admin = _admin(swarm)
    form = {"genome": "svc", "order": "pause"}
    assert admin.json("POST", "/dashboard/api/rollout", form)[0] == 403  # no CSRF token
    status, body = admin.json("POST", "/dashboard/api/rollout", {**form, "csrf": "forged"})
    assert status == 403 and "CSRF" in body["error"]
    other = _admin(swarm)  # another session's token is not this one's
    assert admin.json("POST", "/dashboard/api/rollout", {**form, "csrf": other.csrf})[0] == 403
    viewer = Client(swarm.host)
    assert viewer.login(make_token(swarm.config, "watcher", role="viewer")) == 303
    status, body = viewer.json("POST", "/dashboard/api/rollout", {**form, "csrf": viewer.csrf})
    assert status == 403 and "may not" in body["error"]
    held = {"genome": "svc", "candidate": "c" * 12, "decision": "approve", "csrf": viewer.csrf}
    assert viewer.json("POST", "/dashboard/api/held", held)[0] == 403
    operator = Client(swarm.host)
    assert operator.login(make_token(swarm.config, "ops", role="operator")) == 303
    assert operator.json("POST", "/dashboard/api/held", {**held, "csrf": operator.csrf})[0] == 403
    status, body = operator.json("POST", "/dashboard/api/rollout", {**form, "order": "resume"},
                                 headers={"X-CSRF-Token": operator.csrf})  # fmt: skip
    assert status == 200 and set(body["nodes"]) == set(swarm.config.ids), body
    status, body = admin.json("POST", "/dashboard/api/rollout", {**form, "order": "explode", "csrf": admin.csrf})  # fmt: skip
    assert status == 400
    # the admin signs (the dashboard holds its key): the swarm itself refuses an unknown candidate
    status, body = admin.json("POST", "/dashboard/api/held", {**held, "csrf": admin.csrf})
    assert status == 409 and "no held candidate" in body["error"], body
    # an approver's token whose key this dashboard does not hold may not sign as anyone
    eve = Client(swarm.host)
    assert eve.login(make_token(swarm.config, "eve", role="approver")) == 303
    status, body = eve.json("POST", "/dashboard/api/held", {**held, "csrf": eve.csrf})
    assert status == 403 and "no signing key for eve" in body["error"], body
    _, _, page = eve.request("GET", "/dashboard/genome/svc")
    assert 'value="approve"' not in page
    # logging out ends the session: its cookie opens nothing any more
    assert admin.request("POST", "/dashboard/logout", {"csrf": admin.csrf})[0] == 303
    assert admin.request("GET", "/dashboard/api/status")[0] == 401


def test_pages_show_the_swarm_lineage_diff_and_log_escaped(swarm: Swarm) -> None:
    version = swarm.adopt("pages", mutator="<script>alert(1)</script>")
    client = _admin(swarm)
    status, nodes = client.json("GET", "/dashboard/api/status")
    assert status == 200 and [n["node"] for n in nodes["nodes"]] == swarm.config.ids
    assert sum(n["role"] == "leader" for n in nodes["nodes"]) == 1
    _, _, page = client.request("GET", "/dashboard/")
    assert page.count('class="node role-') == 3 and version[:12] in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    _, _, genome = client.request("GET", "/dashboard/genome/svc")
    assert version[:12] in genome and "badge head" in genome and "plot.svg?by=time" in genome
    status, headers, svg = client.request("GET", "/dashboard/genome/svc/plot.svg?by=version")
    assert status == 200 and headers["content-type"].startswith("image/svg") and "<svg" in svg
    _, _, diff = client.request("GET", f"/dashboard/genome/svc/version/{version[:12]}")
    assert '<span class="add">+# pages</span>' in diff and version in diff
    _, _, found = client.request("GET", "/dashboard/log?type=VersionAdopted&q=pages")
    assert f"/dashboard/genome/svc/version/{version}" in found
    _, _, none = client.request("GET", "/dashboard/log?type=VersionAdopted&q=no-such-text")
    assert f"/version/{version}" not in none
    _, _, by_node = client.request("GET", "/dashboard/log?node=nobody")
    assert "VersionAdopted" not in by_node.split("<tbody")[1]
    assert client.request("GET", "/dashboard/genome/nothing")[0] == 404


def test_held_candidates_are_listed_with_buttons_for_approvers_only(swarm: Swarm) -> None:
    candidate = swarm.hold("held")
    admin = _admin(swarm)
    _, _, page = admin.request("GET", "/dashboard/genome/svc")
    held = page.split('class="held"', 1)[1]
    assert candidate[:12] in held and 'name="decision" value="approve"' in held
    assert "&lt;b&gt;an LLM wrote it&lt;/b&gt;" in held
    viewer = Client(swarm.host)
    assert viewer.login(make_token(swarm.config, "looker", role="viewer")) == 303
    _, _, seen = viewer.request("GET", "/dashboard/genome/svc")
    assert candidate[:12] in seen and 'value="approve"' not in seen  # no buttons it may not use
    _, _, diff = admin.request("GET", f"/dashboard/genome/svc/version/{candidate}")
    assert '<span class="add">+# held</span>' in diff


def test_rollouts_show_blue_and_green_figures_side_by_side(swarm: Swarm) -> None:
    version = swarm.adopt("figures")
    wait(lambda: all((n.live.deployments.board.get("svc") or {}).get("phase") == "stepping"
                     for n in swarm.nodes), 90, "every node rolling out")  # fmt: skip
    for node in swarm.nodes:
        for a in range(20):
            _post_json(node, {"a": a, "b": 1})
    _, _, page = _admin(swarm).request("GET", "/dashboard/genome/svc")
    section = page.split('id="rollouts-svc"', 1)[1].split("</section>", 1)[0]
    assert section.count('class="rollout"') == 3 and version[:12] in section
    assert "requests, 0 errors, mean" in section, section


def _post_json(node: object, body: dict[str, int]) -> None:
    front = node.service.front  # type: ignore[attr-defined]
    conn = http.client.HTTPConnection(front.host, front.port, timeout=30)
    conn.request("POST", "/v1/svc/add", body=json.dumps(body), headers={"Content-Type": "application/json"})  # fmt: skip
    assert conn.getresponse().status == 200
    conn.close()


def test_a_new_adoption_reaches_the_event_stream(swarm: Swarm) -> None:
    client = _admin(swarm)
    _, _, page = client.request("GET", "/dashboard/")
    start = int(page.split('data-after="', 1)[1].split('"', 1)[0])  # the page's newest event
    assert start > 0
    seen: list[dict[str, object]] = []
    done = threading.Event()

    def listen() -> None:
        conn = http.client.HTTPConnection(*swarm.host, timeout=60)
        conn.request("GET", f"/dashboard/events?after={start}", headers={"Cookie": client.cookie})
        reply = conn.getresponse()
        assert reply.status == 200 and reply.getheader("Content-Type") == "text/event-stream"
        kind = ""
        while not done.is_set():
            line = reply.fp.readline().decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind == "log":
                seen.append(json.loads(line[6:]))
        conn.close()

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    try:
        version = swarm.adopt("live")
        wait(lambda: any(e.get("head") == version for e in seen), 30, "the adoption streamed")
        item = next(e for e in seen if e.get("head") == version)
        assert item["type"] == "VersionAdopted" and version[:12] in str(item["html"])
        assert [e["seq"] for e in seen] == sorted({e["seq"] for e in seen})  # in order, once each
    finally:
        done.set()
        swarm.adopt("wake the stream")  # one more event ends the reader's blocking read
        thread.join(30)


def test_logging_out_ends_the_sessions_open_event_stream(swarm: Swarm) -> None:
    """A stream opened by a session must not keep streaming the swarm after its logout."""
    client = _admin(swarm)
    conn = http.client.HTTPConnection(*swarm.host, timeout=60)
    ended = threading.Event()
    try:
        conn.request("GET", "/dashboard/events?after=0", headers={"Cookie": client.cookie})
        reply = conn.getresponse()
        assert reply.status == 200 and reply.getheader("Content-Type") == "text/event-stream"

        def drain() -> None:
            reply.read()  # returns at the end of the stream
            ended.set()

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        assert not ended.wait(1.0)  # open while the session lasts
        assert client.request("POST", "/dashboard/logout", {"csrf": client.csrf})[0] == 303
        wait(ended.is_set, 30, "the logged-out session's stream to end")
    finally:
        conn.close()


def test_log_plot_writes_png_and_svg_with_every_objective(tmp_path: Path, swarm: Swarm) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    store = swarm.config.store_url(swarm.nodes[0].id).removeprefix("sqlite:///")
    for name in ("fit.png", "fit.svg"):
        out = tmp_path / name
        shown = CliRunner().invoke(app, ["log", "plot", "--store", store, "--genome", "svc", "--out", str(out)])  # fmt: skip
        assert shown.exit_code == 0, shown.output
        assert str(out.resolve()) in shown.stdout.replace("\n", "")
        data = out.read_bytes()
        assert data.startswith(b"\x89PNG") if name.endswith(".png") else b"seconds" in data
    by_swarm = tmp_path / "swarm.svg"
    shown = CliRunner().invoke(app, ["log", "plot", "--config", str(swarm.config.path), "--genome", "svc", "--out", str(by_swarm)])  # fmt: skip
    assert shown.exit_code == 0 and by_swarm.read_bytes().startswith(b"<?xml"), shown.output
    bad = CliRunner().invoke(
        app, ["log", "plot", "--store", store, "--out", str(tmp_path / "x.gif")]
    )
    assert bad.exit_code != 0 and ".png or .svg" in bad.output


def test_every_node_serves_its_own_dashboard_on_its_front(swarm: Swarm) -> None:
    for node in swarm.nodes:
        host, port = node.service.front.host, node.service.front.port
        client = Client((host, port))
        assert client.request("GET", "/dashboard/")[0] == 302
        assert client.request("GET", "/dashboard/api/status")[0] == 401
        assert client.login(swarm.config.keypair("admin")[1]) == 303
        status, body = client.json("GET", "/dashboard/api/status")
        assert status == 200 and [n["node"] for n in body["nodes"]] == [node.id]
        _, _, page = client.request("GET", "/dashboard/genome/svc")
        assert node.store.head("svc").version[:12] in page
        assert (
            client.json("POST", "/dashboard/api/rollout", {"genome": "svc", "order": "pause"})[0]
            == 403
        )
        # a node holds no person's signing key: its dashboard shows held candidates, signs nothing
        held = {"genome": "svc", "candidate": "c" * 12, "decision": "approve", "csrf": client.csrf}
        status, body = client.json("POST", "/dashboard/api/held", held)
        assert status == 501 and "--approver" in body["hint"], body
        assert 'value="approve"' not in page
        assert client.request("GET", "/v1/health")[0] == 200  # the service's routes are untouched


def test_hostile_input_is_refused_or_shown_as_text(swarm: Swarm) -> None:
    client = _admin(swarm)
    for path in (
        "/dashboard/events?after=abc", "/dashboard/log?limit=999999999&since=garbage&until=2999-01-01T00:00",
        "/dashboard/log?q=%3Cscript%3Ealert(1)%3C/script%3E", "/dashboard/log?limit=-5",
        "/dashboard/genome/%3Cscript%3E", "/dashboard/genome/svc/version/%3Cimg%20src%3Dx%3E",
        "/dashboard/genome/svc/version/ab", "/dashboard/genome/svc/plot.svg?by=%3Cx%3E",
    ):  # fmt: skip
        if "events" in path:
            continue  # a stream: checked below
        status, _, body = client.request("GET", path)
        assert status in (200, 400, 404), (path, status)
        assert "<script>" not in body and "<img src=x>" not in body, path
    _, _, future = client.request("GET", "/dashboard/log?since=2999-01-01T00:00")
    assert 'data-seq="' not in future  # nothing happened after 2999
    big = {"secret": "x" * (1 << 20)}
    assert Client(swarm.host).request("POST", "/dashboard/login", big)[0] == 413


def test_the_read_ops_show_rollbacks_filters_and_refuse_short_prefixes(tmp_path: Path) -> None:
    from consensus.admin_reads import read_ops
    from events.records import Adoption
    from events.store import GenomeStore
    from evolution.patch import make_patch
    from evolution.tree import version_id

    manifest = (Path(__file__).parent / "data" / "svc" / "genome.toml").read_text()
    trees = [{"genome.toml": manifest, "svc/calc.py": f"X = {i}\n"} for i in range(3)]
    with GenomeStore.open(f"sqlite:///{tmp_path}/s.db") as store:
        store.register("svc", manifest, trees[0], 1.0, "n1")
        for parent, child in zip(trees, trees[1:], strict=False):
            store.adopt("svc", Adoption(version_id(child), version_id(parent), make_patch(parent, child),
                                        "m", "k", 1.0, 0.5, 2.0, 1.9, 2.1), "n2")  # fmt: skip
        store.rollback("svc", version_id(trees[0]), "bad <luck>", "n3")
        ops = read_ops(store)
        genome = ops["genome"]({"genome": "svc"})
        states = {row[0]: row[7] for row in genome["versions"]}
        assert states == {version_id(trees[0]): "adopted", version_id(trees[1]): "rolled_back",
                          version_id(trees[2]): "rolled_back"}  # fmt: skip
        assert genome["head"] == version_id(trees[0]) and genome["rollbacks"][0][3] == "bad <luck>"
        rows = ops["log"]({"genome": "svc", "type": "VersionAdopted"})["rows"]
        assert [r[3] for r in rows] == [version_id(trees[1]), version_id(trees[2])]
        assert all("patch" not in r[7] for r in rows)  # bulky fields stay out of log rows
        assert [r[1] for r in ops["log"]({"node": "n3"})["rows"]] == ["RolledBack"]
        assert ops["log"]({"q": "x = 2"})["rows"][0][3] == version_id(trees[2])  # patches searched
        assert len(ops["log"]({"after": 1})["rows"]) == 3
        assert ops["log"]({"genome": "nothing"})["ok"] is False
        assert ops["version"]({"genome": "svc", "version": "ab"})["ok"] is False
        found = ops["version"]({"genome": "svc", "version": version_id(trees[2])[:8]})
        assert found["ok"] and "+X = 2" in found["events"][0]["data"]["patch"]


def test_tars_dashboard_serves_the_swarm_until_interrupted(swarm: Swarm) -> None:
    import os
    import re
    import signal
    import subprocess
    import sys

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "300"}
    command = [sys.executable, "-m", "cli.main", "dashboard", "--config", str(swarm.config.path), "--port", "0"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)/dashboard/", line)
        assert found, line
        client = Client(("127.0.0.1", int(found.group(1))))
        assert client.request("GET", "/dashboard/")[0] == 302
        assert client.login(swarm.config.keypair("admin")[1]) == 303
        status, body = client.json("GET", "/dashboard/api/status")
        assert status == 200 and [n["node"] for n in body["nodes"] if n["up"]] == swarm.config.ids
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
