"""Three SwarmNodes serve the genome's head over HTTP and follow an adoption (docs/service.md)."""

from __future__ import annotations

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
    # stopped nodes leave no worker behind (the versions are in the workers' command lines)
    wait(
        lambda: not processes_with(first) and not processes_with(win.version), 10, "no workers left"
    )
