"""cluster.yml: the shipped file loads, every bad input names file, line, key and fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cli.cluster import keys as keys_command
from evolution.errors import ConfigError
from runtime.config import ADMIN, EvolutionSection, NodeSpec, load_cluster, parse_cluster

ROOT = Path(__file__).resolve().parent.parent

GOOD = """\
# a test swarm
cluster:
  name: test
  state: state
  keys: state/keys
  timers: {election_min: 0.2, election_max: 0.4, heartbeat: 0.05}
nodes:
  - id: node-1
    host: 127.0.0.1
    port: 7101
  - id: node-2
    host: 127.0.0.1
    port: 7102
genomes: [genome]
evolution: {cycles: 3, candidates_per_cycle: 1, seed: 1, incubators: 1}
"""


def write(folder: Path, text: str = GOOD) -> Path:
    (folder / "genome").mkdir(exist_ok=True)
    path = folder / "cluster.yml"
    path.write_text(text)
    return path


def problem(folder: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_cluster(write(folder, text))
    message = str(caught.value)
    assert "\n" not in message
    assert caught.value.hint, message
    return message


def test_shipped_cluster_yml_loads() -> None:
    config = load_cluster(ROOT / "cluster.yml")
    assert config.ids == ["node-1", "node-2", "node-3"]
    assert config.backend == "process"
    assert config.endpoint("node-2") == "tcp://127.0.0.1:7102"
    assert config.store_url("node-1") == f"sqlite:///{ROOT}/tars-cluster/node-1/store.db"
    assert config.store_url("node-3") == f"sqlite:///{ROOT}/tars-cluster/node-3/store.db"
    assert config.keys_dir == ROOT / "tars-cluster" / "keys"
    assert config.genome_dirs == [ROOT / "genomes" / "logstats"]
    assert config.journal_path("node-1") == ROOT / "tars-cluster" / "node-1" / "raft.journal"
    assert config.timers.election_min > 3 * config.timers.heartbeat
    assert config.evolution.cycles == 8


def test_paths_resolve_against_the_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir("/")
    text = GOOD.replace("    port: 7102\n", "    port: 7102\n    store: sqlite:///db/two.db\n")
    config = load_cluster(write(tmp_path, text))
    assert config.path == tmp_path / "cluster.yml"
    assert config.base_dir == tmp_path
    assert config.state_dir("node-1") == tmp_path / "state" / "node-1"
    assert config.store_url("node-1") == f"sqlite:///{tmp_path}/state/node-1/store.db"
    assert config.store_url("node-2") == f"sqlite:///{tmp_path}/db/two.db"
    assert (
        config.log_path("node-1").parent
        == config.pid_path("node-1").parent
        == tmp_path / "state" / "node-1"
    )
    assert config.genome_dirs == [tmp_path / "genome"]


@pytest.mark.parametrize(
    ("store", "url"),
    [
        ("sqlite:////abs/s.db", "sqlite:////abs/s.db"),
        ("postgresql://tars@127.0.0.1:5432/tars", "postgresql://tars@127.0.0.1:5432/tars"),
        ("memory://", "memory://"),
        ("plain/path.db", "sqlite:///{base}/plain/path.db"),
    ],
)
def test_store_urls(tmp_path: Path, store: str, url: str) -> None:
    text = GOOD.replace("    port: 7101\n", f"    port: 7101\n    store: {store}\n")
    config = load_cluster(write(tmp_path, text))
    assert config.store_url("node-1") == url.format(base=tmp_path)


@pytest.mark.parametrize(
    ("edit", "needles"),
    [
        (lambda t: t.replace("nodes:\n", "nodes: [\n", 1), ["cluster.yml:", "not valid YAML"]),
        (
            lambda t: t.replace("port: 7102", "port: 70000"),
            [
                "cluster.yml:13:",
                "nodes[1].port",
                "less than or equal to 65535",
                "between 1 and 65535",
            ],
        ),
        (
            lambda t: t.replace("port: 7102", "port: many"),
            ["nodes[1].port", "valid integer", "between 1 and 65535"],
        ),
        (
            lambda t: t.replace(
                "    host: 127.0.0.1\n    port: 7101", "    host: 127.0.0.1\n    prot: 7101"
            ),
            [
                "cluster.yml:10:",
                "nodes[0].prot",
                "unknown key 'prot'",
                "allowed here: id, host, port",
            ],
        ),
        (
            lambda t: t.replace("  name: test", "  name: test\n  colour: red"),
            ["cluster.colour", "unknown key", "allowed here: name, backend"],
        ),
        (lambda t: t.replace("    port: 7101\n", ""), ["nodes[0]", "port", "add it"]),
        (
            lambda t: t.replace("id: node-2", "id: node-1"),
            ["cluster.yml:11:", "nodes[1].id", "'node-1' is used twice", "own id"],
        ),
        (
            lambda t: t.replace("port: 7102", "port: 7101"),
            [
                "cluster.yml:13:",
                "nodes[1].port",
                "127.0.0.1:7101 is already taken by node-1",
                "own port",
            ],
        ),
        (lambda t: t.replace("id: node-2", "id: Node_2"), ["nodes[1].id", "lowercase letters"]),
        (lambda t: t.replace("id: node-2", "id: admin"), ["nodes[1].id", "reserved"]),
        (
            lambda t: t.replace("[genome]", "[genome, nowhere]"),
            ["cluster.yml:14:", "genomes[1]", "nowhere does not exist"],
        ),
        (
            lambda t: t.replace("heartbeat: 0.05", "heartbeat: 0.1"),
            ["cluster.timers", "3 × heartbeat"],
        ),
        (
            lambda t: t.replace("election_max: 0.4", "election_max: 0.1"),
            ["cluster.timers", "election_max"],
        ),
        (
            lambda t: t.replace("  name: test", "  name: test\n  compaction: {after: 5, keep: 10}"),
            ["cluster.compaction", "after (5) must be more than keep (10)", "after: 10000"],
        ),
        (
            lambda t: t.replace("  name: test", "  name: test\n  compaction: {aftre: 50}"),
            ["cluster.compaction.aftre", "unknown key", "allowed here: after, keep"],
        ),
        (
            lambda t: t.replace("  name: test", "  name: test\n  bounds: {reorder_bytes: 0}"),
            ["cluster.bounds.reorder_bytes", "greater than or equal to 1"],
        ),
        (
            lambda t: t.replace("  name: test", "  name: test\n  bounds: {reorder: 5}"),
            ["cluster.bounds.reorder", "unknown key", "reorder_bytes"],
        ),
        (
            lambda t: t.replace("  name: test", "  name: test\n  backend: k8s"),
            ["cluster.yml:4:", "cluster.backend", "'process' or 'docker'"],
        ),
        (
            lambda t: t.split("nodes:")[0] + "nodes: []\ngenomes: [genome]\n",
            ["nodes", "at least 1"],
        ),
        (
            lambda t: t.replace("    port: 7101\n", "    port: 7101\n    public_key: short\n"),
            ["nodes[0].public_key", "Z85"],
        ),
        (
            lambda t: t.replace("    port: 7101\n", "    port: 7101\n    store: ftp://x/y\n"),
            ["nodes[0].store", "ftp://"],
        ),
        (
            lambda t: t.replace("    port: 7102\n", "    port: 7102\n    port: 7103\n"),
            ["cluster.yml:14:", "nodes[1].port: given twice", "keep one"],
        ),
        (lambda t: "", ["is empty"]),
        (lambda t: "- just\n- a list\n", ["expected a mapping"]),
    ],
    ids=[
        "yaml-syntax",
        "port-range",
        "port-type",
        "unknown-node-key",
        "unknown-cluster-key",
        "missing-port",
        "duplicate-id",
        "duplicate-port",
        "bad-id",
        "admin-id",
        "missing-genome",
        "heartbeat",
        "election-max",
        "compaction-order",
        "compaction-key",
        "bounds-value",
        "bounds-key",
        "backend",
        "no-nodes",
        "public-key",
        "store-scheme",
        "duplicate-key",
        "empty",
        "not-a-mapping",
    ],
)
def test_bad_input_names_key_line_and_fix(tmp_path: Path, edit: object, needles: list[str]) -> None:
    assert callable(edit)
    message = problem(tmp_path, edit(GOOD))
    for needle in needles:
        assert needle in message, message


def test_yaml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    message = problem(tmp_path, GOOD.replace("    port: 7102", "    port: 7102\n  bad: [unclosed"))
    assert re.search(r"cluster\.yml:1[2-6]:\d+: not valid YAML", message), message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yml: no such file .* --config"):
        load_cluster(tmp_path / "nope.yml")


def test_unknown_node_id(tmp_path: Path) -> None:
    config = load_cluster(write(tmp_path))
    with pytest.raises(ConfigError) as caught:
        config.endpoint("node-9")
    assert "node 'node-9' is not in" in str(caught.value)
    assert "(nodes: node-1, node-2)" in str(caught.value)
    assert "tars cluster add" in str(caught.value)


def test_missing_key_file(tmp_path: Path) -> None:
    config = load_cluster(write(tmp_path))
    with pytest.raises(ConfigError) as caught:
        config.public_key("node-1")
    assert "node-1.key" in str(caught.value) and str(config.keys_dir) in str(caught.value)
    assert "tars keys" in str(caught.value)
    with pytest.raises(ConfigError, match="admin.key"):
        config.keypair(ADMIN)


def test_ensure_keys_creates_then_is_idempotent(tmp_path: Path) -> None:
    config = load_cluster(write(tmp_path))
    assert config.ensure_keys() == ["node-1", "node-2", ADMIN]
    assert config.ensure_keys() == []
    public, secret = config.keypair("node-1")
    assert len(public) == len(secret) == 40 and public != secret
    assert config.public_key("node-1") == public
    assert config.keypair(ADMIN)[0] != public
    assert sorted(p.name for p in config.keys_dir.iterdir()) == sorted(
        f"{name}.{ext}" for name in ("node-1", "node-2", ADMIN) for ext in ("key", "key_secret")
    )
    assert config.ensure_keys(["node-2"], force=True) == ["node-2"]


def test_inline_public_key_wins_and_gets_no_pair(tmp_path: Path) -> None:
    inline = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
    text = GOOD.replace("    port: 7102\n", f'    port: 7102\n    public_key: "{inline}"\n')
    config = load_cluster(write(tmp_path, text))
    assert config.public_key("node-2") == inline
    assert config.ensure_keys() == ["node-1", ADMIN]


def test_dump_load_round_trip(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    config = load_cluster(write(source))
    nodes = [NodeSpec(id=f"n{i}", host="127.0.0.1", port=9000 + i) for i in range(3)]
    generated = config.with_nodes(
        nodes, state=tmp_path / "work" / "state", evolution=EvolutionSection(cycles=2)
    )
    loaded = generated.dump(tmp_path / "work" / "cluster.yml")
    assert loaded.path == tmp_path / "work" / "cluster.yml"
    assert loaded.ids == ["n0", "n1", "n2"]
    assert loaded.store_url("n1") == f"sqlite:///{tmp_path}/work/state/n1/store.db"
    assert loaded.keys_dir == config.keys_dir
    assert loaded.genome_dirs == config.genome_dirs
    assert loaded.evolution.cycles == 2 and loaded.timers == config.timers
    # Written again from its new place, it still means the same folders.
    again = loaded.dump(tmp_path / "elsewhere" / "cluster.yml")
    assert again.model == loaded.model
    same = config.dump(tmp_path / "copy" / "cluster.yml")
    assert [same.store_url(i) for i in same.ids] == [config.store_url(i) for i in config.ids]
    assert same.genome_dirs == config.genome_dirs


def test_with_nodes_validates(tmp_path: Path) -> None:
    config = load_cluster(write(tmp_path))
    twice = [NodeSpec(id="a", port=1), NodeSpec(id="a", port=2)]
    with pytest.raises(ConfigError, match=r"nodes\[1\]\.id: 'a' is used twice"):
        config.with_nodes(twice)


def test_add_and_remove_node_write_the_file_back(tmp_path: Path) -> None:
    path = write(tmp_path)
    config = load_cluster(path)
    grown = config.add_node(NodeSpec(id="node-3", host="127.0.0.1", port=7103))
    assert grown.ids == ["node-1", "node-2", "node-3"]
    reloaded = load_cluster(path)
    assert reloaded.ids == grown.ids
    assert reloaded.endpoint("node-3") == "tcp://127.0.0.1:7103"
    assert reloaded.model.cluster == config.model.cluster  # the rest is kept as written
    assert reloaded.model.genomes == ["genome"]
    assert path.read_text().startswith("# a test swarm\n")
    before = path.read_text()
    with pytest.raises(ConfigError, match="already taken by node-1"):
        reloaded.add_node(NodeSpec(id="node-4", port=7101))
    assert path.read_text() == before
    shrunk = reloaded.remove_node("node-2")
    assert shrunk.ids == load_cluster(path).ids == ["node-1", "node-3"]
    with pytest.raises(ConfigError, match="'node-2' is not in"):
        shrunk.remove_node("node-2")
    with pytest.raises(ConfigError, match="only node"):
        shrunk.remove_node("node-3").remove_node("node-1")


def test_parse_without_a_file(tmp_path: Path) -> None:
    (tmp_path / "genome").mkdir()
    config = parse_cluster(GOOD, tmp_path / "virtual.yml")
    assert config.base_dir == tmp_path


# -- `tars keys` ------------------------------------------------------------------------


def keys_app() -> typer.Typer:
    app = typer.Typer()
    app.command("keys")(keys_command)

    @app.callback()
    def main() -> None:
        """So that `keys` is a subcommand, as under `tars`."""

    return app


def test_keys_command_makes_and_prints_keys(tmp_path: Path) -> None:
    path = write(tmp_path)
    runner = CliRunner()
    first = runner.invoke(keys_app(), ["keys", "--config", str(path)])
    assert first.exit_code == 0, first.output
    config = load_cluster(path)
    for name in ("node-1", "node-2", ADMIN):
        assert config.keypair(name)[0] in first.stdout
    assert first.stdout.count("made") == 3
    again = runner.invoke(keys_app(), ["keys", "--config", str(path), "--id", "node-1"])
    assert (
        again.exit_code == 0
        and "kept" in again.stdout
        and config.public_key("node-1") in again.stdout
    )


def test_keys_command_bad_id_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path)
    result = CliRunner().invoke(keys_app(), ["keys", "--config", str(path), "--id", "node-7"])
    assert result.exit_code != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "node 'node-7' is not in" in lines[0], result.stderr


def test_each_config_module_imports_first_and_the_names_stay_in_runtime_config() -> None:
    """runtime.config re-exports ClusterConfig from runtime.cluster_config, which reaches
    back for the schema only when it validates: any of them may be the first imported."""
    import subprocess
    import sys

    for first in ("runtime.cluster_config", "runtime.config_yaml", "runtime.config_errors"):
        code = (
            f"import {first}\n"
            "from runtime.config import ADMIN, ClusterConfig, load_cluster\n"
            "import runtime.cluster_config as cc\n"
            "assert ClusterConfig is cc.ClusterConfig and ADMIN == cc.ADMIN == 'admin'\n"
            f"c = load_cluster({str(ROOT / 'cluster.yml')!r})\n"
            "assert c.with_nodes(c.nodes[:1]).ids == ['node-1']\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr


def test_the_bounds_of_cluster_yml_reach_the_nodes_transport(tmp_path: Path) -> None:
    """A peer can make a node hold only what ``cluster.bounds`` allows (issue 9)."""
    from runtime.node_transport import node_transport

    text = GOOD.replace("  name: test", "  name: test\n  bounds: {reorder_bytes: 65536}")
    config = load_cluster(write(tmp_path, text))
    config.ensure_keys()
    transport = node_transport(config, "node-1")
    assert transport.max_reorder_bytes == 65536
    assert transport.max_backlog_bytes == 16 << 20  # the default where the file is silent
    assert load_cluster(write(tmp_path)).bounds.unacked_bytes == 32 << 20
