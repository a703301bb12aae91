"""The held-out tests: run only by the nodes that vote, never by the proposer.

A candidate written to pass the tests it was shown (by a model that read them, or by a
search that overfits) can still be wrong; tests the proposer never ran and no model ever
saw are the check it could not have tuned itself to.  The manifest names the command
(``commands.held_out``) and the files only it reads (``genome.held_out``).
"""

from __future__ import annotations

from collections.abc import Mapping

from evolution.manifest import Manifest
from runtime.sandbox import Sandbox
from runtime.sandbox_result import RunResult, SandboxLimits


def run_held_out(sandbox: Sandbox, tree: Mapping[str, str], manifest: Manifest) -> RunResult | None:
    """Run the manifest's held-out command on a copy of ``tree``; None when it declares none."""
    command = manifest.commands.held_out
    if command is None:
        return None
    limits = SandboxLimits.from_manifest(manifest.limits)
    with sandbox.workspace(tree) as workdir:
        return sandbox.run(workdir, command, limits)
