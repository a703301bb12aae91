"""The dashboard's approve and reject on a real three-node swarm with a quorum of two, over
plain HTTP (docs/dashboard.md, "Held candidates: who signs, and where").

The dashboard holds alice's and bob's signing keys (`tars dashboard --approver alice
--approver bob`); each login signs only as itself, so one person's approval adopts nothing,
the second does, on every node; a rejection is final; the admin, whose key this dashboard
does not hold, may not sign at all.
"""

from __future__ import annotations

from pathlib import Path

from dashkit import Client
from swarmkit import wait
from test_approval import (
    ONE,
    V0,
    approval_cluster,
    approving_swarm,
    heads,
    hold_two,
    same_index,
)

from cli.dashboard import approving
from evolution.errors import ConfigError
from evolution.tree import version_id
from runtime.access_tokens import make_token
from runtime.dashboard import DashboardServer, for_swarm


def test_the_dashboard_adopts_at_the_quorum_each_login_signing_as_itself(tmp_path: Path) -> None:
    path, config = approval_cluster(tmp_path)  # quorum 2 of admin, alice, bob
    for wrong in (["mallory"], ["node-1"]):  # no approver: `tars dashboard` stops at once
        try:
            approving(config, wrong)
        except ConfigError as exc:
            assert "not an approver" in exc.message and exc.hint
        else:
            raise AssertionError(f"{wrong} signs")
    decide, signs_for = approving(config, ["alice", "bob"])
    assert signs_for == {"alice", "bob"}
    with approving_swarm(path) as nodes:
        hold_two(nodes)
        server = DashboardServer(for_swarm(config, decide=decide, signs_for=signs_for))
        server.start()
        try:
            host = (server.host, server.port)
            alice, bob, admin = Client(host), Client(host), Client(host)
            assert alice.login(make_token(config, "alice", role="approver")) == 303
            assert bob.login(make_token(config, "bob", role="approver")) == 303
            assert admin.login(config.keypair("admin")[1]) == 303
            _, _, page = alice.request("GET", "/dashboard/genome/tiny")
            assert 'id="approve-c1"' in page and "approve as alice" in page
            assert "0 of 2 approvals" in page
            _, _, seen = admin.request("GET", "/dashboard/genome/tiny")
            assert 'id="approve-c1"' not in seen  # the admin's key is not held here
            form = {"genome": "tiny", "candidate": "c1", "decision": "approve"}
            status, body = admin.json("POST", "/dashboard/api/held", {**form, "csrf": admin.csrf})
            assert status == 403 and "no signing key for admin" in body["error"], body

            status, body = alice.json("POST", "/dashboard/api/held", {**form, "csrf": alice.csrf})
            assert status == 200 and body["approvals"] == ["alice"] and not body["adopted"], body
            wait(lambda: same_index(nodes), 30, "alice's approval applied everywhere")
            assert heads(nodes) == {V0}  # one of two adopts nothing, on any node
            status, body = alice.json("POST", "/dashboard/api/held", {**form, "csrf": alice.csrf})
            assert status == 409 and "alice already decided" in body["error"], body
            _, _, page = bob.request("GET", "/dashboard/genome/tiny")
            assert "1 of 2 approvals (alice)" in page

            reject = {"genome": "tiny", "candidate": "c2", "decision": "reject", "csrf": bob.csrf}
            status, body = bob.json("POST", "/dashboard/api/held", reject)
            assert status == 200 and body["rejected"], body
            status, body = bob.json("POST", "/dashboard/api/held", {**form, "csrf": bob.csrf})
            assert status == 200 and body["adopted"], body
            assert body["approvals"] == ["alice", "bob"]
            wait(lambda: heads(nodes) == {version_id(ONE)}, 60, "adopted on every node")
            late = {"genome": "tiny", "candidate": "c2", "decision": "approve", "csrf": alice.csrf}
            status, body = alice.json("POST", "/dashboard/api/held", late)
            assert status == 409 and "a rejection is final" in body["error"], body
        finally:
            server.stop()
        given = [e.data for e in nodes[1].store.log(genome="tiny") if e.type == "ApprovalGiven"]
        assert [(g.get("approver"), g.get("reason")) for g in given] == [
            ("alice", "(via dashboard)"),
            ("bob", "(via dashboard)"),
            ("bob", "(via dashboard)"),
        ], given
