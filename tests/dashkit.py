"""Helpers for the dashboard tests: a three-node swarm serving svc, its dashboard, HTTP calls.

The swarm is in-process (tests/swarmkit.py ``in_process_swarm``), its nodes real: Raft
over ZeroMQ, SQLite stores, the service's jailed workers.  The dashboard is `tars
dashboard`'s own server reading every node over the admin channel.  The rollout settings
keep a rollout at its first step (no idle window passes, long windows), so a test can
abort one.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from servicekit import SVC
from swarmkit import in_process_swarm, wait

from cli.dashboard import approving
from consensus.ledger import cycle_entry, register_entry
from events.records import Adoption, Held
from evolution.patch import make_patch
from evolution.tree import version_id
from node import SwarmNode
from runtime.config import ClusterConfig
from runtime.dashboard import DashboardServer, for_swarm
from runtime.genome_files import load_genome

#: rollouts that stay at their first step until a person acts
ROLLOUT = """
[rollout]
interval = 30.0
idle_passes = false
min_requests = 5
ready_timeout = 20.0
inconclusive_limit = 100
"""


@dataclass
class Swarm:
    nodes: list[SwarmNode]
    config: ClusterConfig
    server: DashboardServer
    tree: dict[str, str]
    cycle: int = 0

    @property
    def host(self) -> tuple[str, int]:
        return self.server.host, self.server.port

    def head_tree(self) -> dict[str, str]:
        node = self.nodes[0]
        return node.store.materialise("svc", node.store.head("svc").version)

    def adopt(self, marker: str, mutator: str = "test") -> str:
        """Propose a child of the current head (a comment line added) as adopted; wait until
        every node applied it; its version."""
        parent = self.head_tree()
        child = {**parent, "svc/calc.py": parent["svc/calc.py"] + f"\n# {marker}\n"}
        win = Adoption(
            version=version_id(child), parent=version_id(parent), patch=make_patch(parent, child),
            mutator=mutator, kind="test", fitness_before=1.0, fitness_after=0.9, ratio=1.1,
            low=1.05, high=1.15, evidence={},
        )  # fmt: skip
        self.cycle += 1
        node = self.nodes[self.cycle % 3]
        node.propose(cycle_entry("svc", node.id, self.cycle, 3, [], [], win, time.time()))
        wait(lambda: all(n.store.head("svc").version == win.version for n in self.nodes), 60,
             "every node adopted it")  # fmt: skip
        return win.version

    def hold(self, marker: str) -> str:
        """Propose a cycle whose one candidate the governor held; wait until every node has it."""
        parent = self.head_tree()
        child = {**parent, "svc/calc.py": parent["svc/calc.py"] + f"\n# {marker}\n"}
        held = Held(candidate=version_id(child), parent=version_id(parent),
                    patch=make_patch(parent, child), mutator="llm", kind="test",
                    reasons=["<b>an LLM wrote it</b>"], evidence={"ratio": 1.2})  # fmt: skip
        self.cycle += 1
        node = self.nodes[0]
        node.propose(cycle_entry("svc", node.id, self.cycle, 3, [], [held], None, time.time()))
        wait(lambda: all(held.candidate in n.store.head("svc").pending for n in self.nodes), 60,
             "every node holds it")  # fmt: skip
        return held.candidate


@contextlib.contextmanager
def swarm_with_dashboard(root: Path, approvers: tuple[str, ...] = ("admin",)) -> Iterator[Swarm]:
    """The swarm and `tars dashboard`'s server, signing decisions for ``approvers`` (as
    ``--approver``; cluster.yml's default approvers are ``[admin]``, quorum 1)."""
    _, base = load_genome(SVC)
    tree = {**base, "genome.toml": base["genome.toml"] + ROLLOUT}
    with in_process_swarm(root, SVC) as nodes:
        nodes[0].propose(register_entry("svc", tree["genome.toml"], tree, 1.0, nodes[0].id, time.time()))  # fmt: skip
        wait(lambda: all("svc" in n.store.genomes() for n in nodes), 60, "svc registered")
        config = nodes[0].cluster
        decide, signs_for = approving(config, list(approvers))
        server = DashboardServer(for_swarm(config, decide=decide, signs_for=signs_for, poll=0.05))
        server.start()
        try:
            yield Swarm(nodes, config, server, tree)
        finally:
            server.stop()
    # the nodes' own dashboards stopped with their fronts: no thread of any dashboard is left
    wait(lambda: not [t for t in threading.enumerate() if t.name.startswith("dashboard")], 10,
         "every dashboard thread gone")  # fmt: skip


class Client:
    """A plain HTTP client of the dashboard that keeps its session cookie (no redirects)."""

    def __init__(self, host: tuple[str, int]) -> None:
        self.host, self.cookie, self.csrf = host, "", ""

    def request(self, method: str, path: str, form: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:  # fmt: skip
        conn = http.client.HTTPConnection(*self.host, timeout=60)
        try:
            body = urlencode(form).encode() if form is not None else None
            sent = dict(headers or {})
            if body is not None:
                sent["Content-Type"] = "application/x-www-form-urlencoded"
            if self.cookie:
                sent["Cookie"] = self.cookie
            conn.request(method, path, body=body, headers=sent)
            reply = conn.getresponse()
            text = reply.read().decode("utf-8", "replace")
            got = {k.lower(): v for k, v in reply.getheaders()}
            if "set-cookie" in got:
                self.cookie = got["set-cookie"].split(";", 1)[0]
            return reply.status, got, text
        finally:
            conn.close()

    def login(self, secret: str) -> int:
        status, _, _ = self.request("POST", "/dashboard/login", {"secret": secret})
        if status == 303:
            _, _, page = self.request("GET", "/dashboard/")
            found = re.search(r'<meta name="csrf" content="([^"]+)">', page)
            assert found, page[:500]
            self.csrf = found.group(1)
        return status

    def json(self, method: str, path: str, form: dict[str, str] | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:  # fmt: skip
        status, _, text = self.request(method, path, form, headers)
        return status, json.loads(text)
