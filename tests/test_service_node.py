"""Three SwarmNodes serve the genome's head over HTTP and follow an adoption (docs/service.md)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from servicekit import SVC, variant
from swarmkit import in_process_swarm, wait

from cli.cluster_view import status_rows
from consensus.ledger import cycle_entry, register_entry
from events.records import Adoption
from evolution.patch import make_patch
from evolution.tree import version_id
from runtime.genome_files import load_genome
from runtime.launcher import ProcessLauncher
from runtime.service.front import Front
from runtime.testing import processes_with


def answer(front: Front, a: int, b: int) -> tuple[int, object, str]:
    from servicekit import post

    status, body, _ = post(front, "/v1/svc/add", {"a": a, "b": b})
    return status, body.get("result"), body.get("version", "")


def test_swarm_nodes_serve_their_head_and_follow_an_adoption(tmp_path: Path) -> None:
    _, tree = load_genome(SVC)
    first = version_id(tree)
    with in_process_swarm(tmp_path, SVC) as nodes:
        for node in nodes:  # cluster.yml (write_cluster) gives each node its own http port
            host, port = node.cluster.http_bind(node.id)
            assert port and node.service.url == f"http://{host}:{port}"
            assert node.status()["http"] == node.service.url
        # `tars cluster status --json` rows carry each node's HTTP address as `http`
        config = nodes[0].cluster
        rows = status_rows(config, ProcessLauncher(config), {n.id: n.status() for n in nodes})
        assert [row["http"] for row in rows] == [n.service.url for n in nodes]
        nodes[0].propose(
            register_entry("svc", tree["genome.toml"], tree, 1.0, nodes[0].id, time.time())
        )
        fronts = [node.service.front for node in nodes]
        wait(lambda: all(answer(f, 13, 5)[0] == 200 for f in fronts), 60, "every node serves svc")
        assert {answer(f, 13, 5) for f in fronts} == {(200, 18, first)}
        child = variant("differs")
        win = Adoption(
            version=version_id(child), parent=first, patch=make_patch(tree, child),
            mutator="test", kind="test", fitness_before=1.0, fitness_after=0.5, ratio=2.0,
            low=1.8, high=2.2, evidence={},
        )  # fmt: skip
        nodes[1].propose(cycle_entry("svc", nodes[1].id, 1, 3, [], [], win, time.time()))
        wait(lambda: all(answer(f, 13, 5) == (200, 19, win.version) for f in fronts), 90,
             "every node serves the adopted version")  # fmt: skip
        for node in nodes:
            assert node.service.router.serving("svc") == {"blue": win.version}
        # a version that passes its tests but never answers as a worker: every node keeps
        # serving the one before, and says why
        stuck = dict(child)
        stuck["svc/calc.py"] = stuck["svc/calc.py"].replace(
            "import time\n",
            "import sys\nimport time\n\nif sys.argv[0].endswith('worker_main.py'):\n"
            "    time.sleep(3600)\n",
        )
        for node in nodes:
            node.service.ready_timeout = 2.0
        bad = dataclasses.replace(
            win, version=version_id(stuck), parent=win.version, patch=make_patch(child, stuck)
        )
        nodes[2].propose(cycle_entry("svc", nodes[2].id, 2, 3, [], [], bad, time.time()))
        wait(lambda: all(bad.version in str(n.service.problems.get("svc")) for n in nodes), 90,
             "every node gave up the version that is never ready")  # fmt: skip
        assert {n.store.head("svc").version for n in nodes} == {bad.version}
        assert {answer(f, 13, 5) for f in fronts} == {(200, 19, win.version)}
        assert "not ready within 2 s" in nodes[0].service.problems["svc"][1]
        wait(lambda: not processes_with(bad.version), 10, "its green workers gone")
    # stopped nodes leave no worker behind (the versions are in the workers' command lines)
    wait(
        lambda: not processes_with(first) and not processes_with(win.version), 10, "no workers left"
    )


def test_a_node_process_serves_and_cluster_status_shows_its_address(tmp_path: Path) -> None:
    """A real `tars node start` process: it registers the genome, serves it on the http port
    cluster.yml gives it, `tars cluster status` (table and --json) shows the address, and
    its workers die with it under kill -9."""
    import json

    from servicekit import request
    from swarmkit import LocalSwarm
    from typer.testing import CliRunner

    from cli.cluster import app as cluster_app

    swarm = LocalSwarm(tmp_path, nodes=1, genome=SVC, cycles=1, candidates=1)
    try:
        swarm.up()
        url = swarm.config.http_url("node-1")
        assert url is not None
        front = Front.__new__(Front)  # only its address, for servicekit.request
        front.host, front.port = (
            url.removeprefix("http://").split(":")[0],
            int(url.rsplit(":", 1)[1]),
        )

        def serves() -> bool:
            try:
                status, body, _ = request(front, "POST", "/v1/svc/add", b'{"a": 2, "b": 3}', None)
            except OSError:
                return False
            return status == 200 and body["result"] == 5

        wait(serves, 90, "the node process serves svc over HTTP")
        assert processes_with(version_id(load_genome(SVC)[1]))  # its workers, found by version
        runner = CliRunner()
        shown = runner.invoke(cluster_app, ["status", "--config", str(swarm.config.path), "--json"])
        assert shown.exit_code == 0, shown.output
        rows = [json.loads(line) for line in shown.stdout.splitlines() if line.strip()]
        assert [row["http"] for row in rows] == [url]  # one JSON object per node
        table = runner.invoke(
            cluster_app, ["status", "--config", str(swarm.config.path)], env={"COLUMNS": "200"}
        )
        assert table.exit_code == 0 and url in table.stdout, table.stdout
        swarm.kill("node-1")  # kill -9: the jail's watchdog takes the workers with the node
        served = version_id(load_genome(SVC)[1])
        wait(lambda: not processes_with(served), 10, "no worker left after kill -9 of the node")
    finally:
        swarm.down()
