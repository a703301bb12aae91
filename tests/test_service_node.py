"""Three SwarmNodes serve the genome's head over HTTP and follow an adoption (docs/service.md)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from servicekit import SVC
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


#: the test genome's rollout: short windows, so a test sees a whole rollout in seconds
ROLLOUT = """
[rollout]
interval = 0.5
min_requests = 5
mirror = 0.5
ready_timeout = 5.0
# a loaded 2-core machine's p99 wanders by tens of ms; the slow version adds 400 ms
p99_floor = 0.1
"""


class Load:
    """Callers on every node's front until stopped: (status, result, version) of each call."""

    def __init__(self, fronts: list[Front]) -> None:
        self.fronts, self.seen = fronts, []
        self.halt = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(3)]

    def _run(self, i: int) -> None:
        while not self.halt.is_set():
            for front in self.fronts:
                a = 13 if i % 2 else i  # add(13, 5) is where the "differs" version is wrong
                self.seen.append(answer(front, a, 5))
            time.sleep(0.005)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.halt.set()
        for thread in self.threads:
            thread.join(60)


def curl_metrics(url: str) -> list[tuple[str, dict[str, str], float]]:
    """``GET /metrics`` as a client would, parsed by prometheus_client's own parser."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url + "/metrics", timeout=10) as reply:
        assert reply.headers["Content-Type"].startswith("text/plain")
        text = reply.read().decode()
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def total(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(
        value
        for found, have, value in samples
        if found == name and all(have.get(k) == v for k, v in labels.items())
    )


def adopt(node: Any, cycle: int, parent: dict[str, str], child: dict[str, str]) -> str:
    """Propose ``child`` as adopted (a cycle entry; the voters re-run its tests)."""
    win = Adoption(
        version=version_id(child), parent=version_id(parent), patch=make_patch(parent, child),
        mutator="test", kind="test", fitness_before=1.0, fitness_after=0.5, ratio=2.0,
        low=1.8, high=2.2, evidence={},
    )  # fmt: skip
    node.propose(cycle_entry("svc", node.id, cycle, 3, [], [], win, time.time()))
    return win.version


def test_a_swarm_rolls_out_a_good_version_and_rolls_back_bad_ones_on_every_node(
    tmp_path: Path,
) -> None:
    """Issue 11's must-shows on the real service: under live load from callers on every
    node, an equal version is rolled out step by step and promoted everywhere; one that
    answers differently on inputs its tests do not cover (mirrored answers differ), and
    one that passes its tests but is slower live, are each rolled back on every node
    through a committed rollback; a green that never becomes ready is abandoned while
    blue serves on; and no request is lost at any point."""
    _, base = load_genome(SVC)
    tree = {**base, "genome.toml": base["genome.toml"] + ROLLOUT}
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

        def state() -> str:
            return "; ".join(
                f"{n.id}: serving {n.service.router.serving('svc')}, head "
                f"{n.store.head('svc').version[:12]}, rollout {n.live.deployments.board.get('svc')}"
                for n in nodes
            )

        def blues(version: str) -> bool:
            return all(n.service.router.serving("svc") == {"blue": version} for n in nodes)

        def heads(version: str) -> bool:
            return all(n.store.head("svc").version == version for n in nodes)

        before = [curl_metrics(node.service.url) for node in nodes]
        with Load(fronts) as load:
            good = {**tree, "svc/calc.py": tree["svc/calc.py"].replace("a + b", "b + a")}
            good_version = adopt(nodes[1], 1, tree, good)
            try:
                wait(lambda: blues(good_version), 90, "every node promoted the good version")
            except AssertionError as exc:
                raise AssertionError(f"{exc}: {state()}") from None
            phases = {n.live.deployments.board["svc"]["phase"] for n in nodes}
            assert phases == {"promoted"}
            differs = {**good, "svc/calc.py": good["svc/calc.py"].replace(
                "    return b + a\n", "    return b + a + (a == 13)\n")}  # fmt: skip
            assert differs != good
            bad = adopt(nodes[2], 2, good, differs)
            wait(lambda: heads(bad), 60, "the different version adopted")
            wait(lambda: heads(good_version), 90, "the swarm rolled the different version back")
            wait(lambda: blues(good_version), 90, "every node serves the good version again")
            slow = {**good, "svc/calc.py": good["svc/calc.py"].replace(
                "    return b + a\n", "    time.sleep(0.4)\n    return b + a\n")}  # fmt: skip
            assert slow != good
            slower = adopt(nodes[0], 3, good, slow)
            wait(lambda: heads(slower), 60, "the slower version adopted")
            wait(lambda: heads(good_version), 90, "the swarm rolled the slower version back")
            wait(lambda: blues(good_version), 90, "every node serves the good version again")
            # a version that passes its tests but never answers as a worker: abandoned
            stuck = {**good, "svc/calc.py": good["svc/calc.py"].replace(
                "import time\n", "import sys\nimport time\n\nif sys.argv[0].endswith("
                "'worker_main.py'):\n    time.sleep(3600)\n")}  # fmt: skip
            never = adopt(nodes[1], 4, good, stuck)
            wait(lambda: heads(never), 60, "the stuck version adopted")
            wait(lambda: all(n.live.deployments.board["svc"]["phase"] == "abandoned"
                             for n in nodes), 90, "every node abandoned the stuck green")  # fmt: skip
            assert blues(good_version)
            wait(lambda: not processes_with(never), 10, "its green workers gone")
        lost = [seen for seen in load.seen if seen[0] != 200]
        assert load.seen and not lost, lost[:5]
        # the log says what happened, the same on every node: two rollbacks, each after a
        # Failed analysis that says why (an answer that differs; a p99 over the limit)
        for node in nodes:
            events = list(node.store.log(genome="svc"))
            assert [e.type for e in events].count("RolledBack") == 2
            failed = {
                e.version: e.data["reason"]
                for e in events
                if e.type == "RolloutStepped" and e.data["result"] == "Failed"
            }
            assert "answered differently" in failed[bad], failed
            assert "p99" in failed[slower], failed
        # every node's /metrics (what `curl` sees) moved with the load and the rollouts
        for node, earlier in zip(nodes, before, strict=True):
            now = curl_metrics(node.service.url)
            assert total(now, "tars_requests_total", genome="svc") > total(
                earlier, "tars_requests_total", genome="svc"
            )
            assert total(now, "tars_rollbacks_total", genome="svc") == 2
            assert total(now, "tars_adoptions_total", genome="svc") >= 4
            assert total(now, "tars_raft_term") >= 1 and total(now, "tars_raft_applied_index") > 0
            assert total(now, "tars_request_seconds_count", genome="svc") > 0
    wait(
        lambda: not processes_with(first) and not processes_with(good_version),
        10,
        "no workers left",
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
