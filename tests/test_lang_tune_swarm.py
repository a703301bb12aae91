"""`improve_self` with `tars run --config` (issue 13): the tune search runs beside a real
swarm (three in-process nodes: ZeroMQ, Raft, SQLite) and its result stays in the CLI's
own log, because the ledger lets no client write a genome's registration or cycle.

The objective is scripted (the user's side of the search, as in test_lang_tune.py), so
the search is fast; the swarm, the admin channel and the stores are real.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from swarmkit import in_process_swarm, propose_retrying, signer
from test_lang_tune import TINY, noisy
from typer.testing import CliRunner

from cli.run_swarm import SwarmCampaign
from consensus.entries import cycle_entry, register_entry
from events.store import GenomeStore

ORIGINAL_LAST_SEQ = SwarmCampaign._last_seq

#: a campaign of one cycle (the test commits it on the swarm), then the tune search
SCRIPT = (
    f'genome tiny from "{TINY}/genome.toml"\n'
    "tune n: int in 1..8 = 4\n"
    "evolve tiny {\n  cycles = 1\n  candidates = n\n  improve_self = true\n"
    "  fitness {\n    threshold = 1.05\n  }\n  tuning {\n    repeats = 3\n    trials = 2\n  }\n}\n"
)


def _genomes(node: Any) -> list[str]:
    return list(node.store.genomes())


#: the swarm's first node, for :func:`_then_one_cycle` (the nodes run evolve=False)
SWARM: list[Any] = []


def _then_one_cycle(campaign: Any, name: str) -> int:
    """Where the followed campaign starts reading, then one cycle of ``tiny`` committed on
    the swarm by a member (registration first): the campaign has its one cycle to follow."""
    from runtime.genome_files import load_genome

    start = int(ORIGINAL_LAST_SEQ(campaign, name))
    node = SWARM[0]
    manifest, tree = load_genome(TINY)
    propose_retrying(node, register_entry(name, tree["genome.toml"], tree, 1.0, node.id, 1.0))
    propose_retrying(node, cycle_entry(name, node.id, 1, 7, [], [], None, 2.0))
    assert manifest.name == name
    return start


def test_improve_self_with_config_runs_the_search_and_keeps_it_off_the_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cli.run_swarm
    import cli.run_tune
    from cli.main import app

    measured: list[tuple[dict[str, Any], int]] = []
    objective = noisy({("n", 5): 1.5, ("n", 3): 1.5}, 0.01)

    def scripted(*_: Any) -> Any:
        def measure(values: dict[str, Any], seed: int) -> float:
            measured.append((dict(values), seed))
            return float(objective(values, seed))

        return measure

    monkeypatch.setattr(cli.run_tune, "campaign_objective", scripted)
    monkeypatch.setattr(cli.run_swarm.SwarmCampaign, "_last_seq", _then_one_cycle)
    path = tmp_path / "tuned.tars"
    path.write_text(SCRIPT, encoding="utf-8")
    store = tmp_path / "cli.db"
    with in_process_swarm(tmp_path / "swarm", TINY) as nodes:
        SWARM[:] = nodes
        config = nodes[0].cluster.path
        result = CliRunner().invoke(
            app,
            ["run", str(path), "--config", str(config), "--store", str(store),
             "--workdir", str(tmp_path / "w"), "--wait", "60"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        # the search ran (it was skipped with --config before): 3 value sets x 3 repeats
        assert len(measured) == 9 and {s for _, s in measured} == {7, 8, 9}, measured
        assert "not in the swarm's ledger" in result.output, result.output
        with GenomeStore.open(f"sqlite:///{store}", create=False) as handle:
            head = handle.head("script-tuned")
            assert head.versions_count == 2, result.output  # registered, then adopted
            text = handle.materialise("script-tuned", head.version)["tuned.tars"]
            assert "tune n: int in 1..8 = 4" not in text and "tune n: int in 1..8" in text
        # no node of the swarm holds the script: the CLI wrote nothing to its ledger
        assert all("script-tuned" not in _genomes(node) for node in nodes)


def test_the_admin_key_cannot_register_a_genome_on_the_swarm(tmp_path: Path) -> None:
    # Why the result stays off the ledger: a registration is a member's entry.  Signed with
    # the admin's own key in the admin's name, the admin channel will not propose it and
    # every node's ledger refuses it by its author rule.
    from cli.swarm_requests import ask
    from consensus.authors import signature_problem
    from consensus.entries import decode

    with in_process_swarm(tmp_path / "swarm", TINY) as nodes:
        cluster = nodes[0].cluster
        entry = register_entry("script-tuned", "[genome]\n", {"tuned.tars": SCRIPT}, 1.0,
                               "admin", 0.0, signer=signer(cluster, "admin"))  # fmt: skip
        body = {"op": "remove", "node": "n9", "entry": entry}  # the op that takes an entry
        for node in nodes:
            reply = ask(cluster, node.id, body, 10.0)
            assert reply["ok"] is False and "only a rollback or a member list" in reply["error"]
            keys = node.state.keys
            assert keys is not None
            problem = signature_problem(decode(entry), entry, keys, node.state.members)
            assert problem == "admin is not a member", problem
        assert all("script-tuned" not in _genomes(node) for node in nodes)
