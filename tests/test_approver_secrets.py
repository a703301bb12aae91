"""An approver's secret key never reaches a candidate's evidence (issue 12; docs/approval.md).

The jail already hides the keys folder; the scrubber is the second wall: a swarm node
tells its sandbox every key file it holds, approvers' included (node.py ``_secrets``),
and a run's output has them replaced before it becomes evidence replicated to every node.
Here a candidate whose test prints alice's secrets (as it would if it had found them)
fails, and its report, the evidence, says ``[secret removed]`` instead.
"""

from __future__ import annotations

from pathlib import Path

from swarmkit import TINY
from test_approval import with_approvers

from cli.demo import write_cluster
from evolution.manifest import parse_manifest
from node import _secrets
from runtime.config import load_cluster
from runtime.genome_files import load_genome
from runtime.incubation import incubate
from runtime.sandbox import Sandbox


def _quoted(text: str, key: str) -> str:
    return text.split(f'{key} = "', 1)[1].split('"', 1)[0]


def test_a_candidate_printing_an_approvers_secret_leaves_no_trace_in_its_evidence(
    tmp_path: Path,
) -> None:
    path = write_cluster(tmp_path, 3, TINY, 1, 1, 3, 1)
    with_approvers(path)  # approvers admin, alice, bob
    config = load_cluster(path)
    config.ensure_keys([*config.ids, "admin", "alice"])  # bob's key is elsewhere
    alice = (config.keys_dir / "alice.key_secret").read_text(encoding="utf-8")
    secrets = _secrets(config, "node-1")
    signing, curve = _quoted(alice, "sign-secret"), _quoted(alice, "secret-key")

    _, tree = load_genome(TINY)
    manifest = parse_manifest(tree["genome.toml"])
    # the run's last line is what the evidence keeps: the secrets are written there at exit
    leak = (
        "import atexit, sys, unittest\n\n"
        f"atexit.register(lambda: sys.stderr.write({alice!r} + 'stolen: ' + {signing!r} + ' ' + {curve!r}))\n\n\n"
        "class Leak(unittest.TestCase):\n"
        "    def test_leak(self):\n"
        "        self.fail('failing on purpose')\n"
    )
    child = {**tree, "tests/test_aaa_leak.py": leak}
    with Sandbox(tmp_path / "sandbox", secrets=secrets) as sandbox:
        report = incubate(sandbox, manifest, "leak", tree, child)
    assert not report.tests_passed and "[secret removed]" in report.detail, report.detail
    said = repr(report)
    for secret in (signing, curve, alice.strip()):
        assert secret not in said
    assert alice in secrets and len(secrets) == 3  # node-1, admin, alice; no peer's, no bob's
    other = (config.keys_dir / "node-2.key_secret").read_text(encoding="utf-8")
    assert other not in secrets
