"""Validator: a node's own check of a peer's proposal before it votes.

A single node (no peers to vote) asks it for the held-out tests alone
(:class:`~actors.messages.CheckHeldOut`) before it adopts a candidate it proved.

The swarm trusts no proposer's word: every node applies the patch to its own copy of the
parent and runs the genome's tests in its own sandbox, then the held-out tests the
proposer never ran (``commands.held_out``), if the manifest has them.  The benchmark is not
re-run —
the proposer's interleaved A/B evidence is in the ledger for anyone to audit, and a
second benchmark on a loaded peer would add noise, not certainty.
"""

from __future__ import annotations

from typing import ClassVar

from actors.base import RoleActor
from actors.messages import CheckHeldOut, HeldOutResult, Validate, Verdict
from evolution.errors import PatchError
from evolution.patch import apply_patch
from evolution.tree import short, version_id
from runtime.held_out import run_held_out
from runtime.incubation import run_tests
from runtime.sandbox import Sandbox, SandboxLimits
from runtime.test_yardstick import not_passed


class Validator(RoleActor):
    role: ClassVar[str] = "validator"
    handlers: ClassVar[dict[type, str]] = {
        Validate: "on_validate",
        CheckHeldOut: "on_check_held_out",
    }

    def __init__(self, sandbox: Sandbox) -> None:
        super().__init__()
        self.sandbox = sandbox

    def on_validate(self, message: Validate) -> Verdict:
        def verdict(yes: bool, reason: str) -> Verdict:
            return Verdict(message.genome, message.proposal, message.version, yes, reason)

        try:
            tree = apply_patch(message.parent_tree, message.patch)
        except PatchError as exc:
            return verdict(False, f"patch does not apply: {exc}")
        if version_id(tree) != message.version:
            return verdict(
                False, f"patch gives {short(version_id(tree))}, not {short(message.version)}"
            )
        manifest, parent = message.manifest, message.parent_tree
        limits = SandboxLimits.from_manifest(manifest.limits)
        result = run_tests(self.sandbox, tree, manifest)
        why = not_passed(self.sandbox, parent, manifest.commands.test, result, limits)
        if why is not None:
            return verdict(False, f"tests fail: {why}")
        held_out = run_held_out(self.sandbox, tree, manifest)
        if held_out is None or manifest.commands.held_out is None:
            return verdict(True, "tests pass")
        why = not_passed(self.sandbox, parent, manifest.commands.held_out, held_out, limits)
        if why is not None:
            return verdict(False, f"held-out tests fail: {why}")
        return verdict(True, "tests and held-out tests pass")

    def on_check_held_out(self, message: CheckHeldOut) -> HeldOutResult:
        """The held-out tests alone, on the full tree (the candidate was proven without them)."""
        try:
            tree = apply_patch(message.parent_tree, message.patch)
        except PatchError as exc:
            return HeldOutResult(False, f"patch does not apply: {exc}")
        manifest = message.manifest
        result = run_held_out(self.sandbox, tree, manifest)
        if result is None or manifest.commands.held_out is None:
            return HeldOutResult(None, "no held-out tests declared")
        limits = SandboxLimits.from_manifest(manifest.limits)
        command, parent = manifest.commands.held_out, message.parent_tree
        why = not_passed(self.sandbox, parent, command, result, limits)
        if why is not None:
            return HeldOutResult(False, why)
        return HeldOutResult(True, "held-out tests pass")
