"""A campaign on a running swarm (`tars run --config cluster.yml`): follow its ledger.

A swarm's cycles are run by its leader (``actors.evolver``), decided by votes and applied
by every node from the Raft ledger; a script does not run cycles beside it (a second
writer would fork the history).  With ``--config`` a campaign follows the swarm instead:
it reads the genome's log through the admin channel's ``log`` op (signed with the CLI's
admin key, as `tars log` does), from the entry it started at, and after each
``CycleCompleted`` it runs the handlers on that cycle's ``CandidateEvaluated`` entries,
until ``cycles`` cycles have been committed.  A cycle whose winner went to the swarm as a
proposal is handled once the swarm decided it (its ``VersionAdopted``, after the votes, or
its ``ProposalRejected``): a swarm's ``CycleCompleted`` names no adopted version, since
the votes come after it, and a handler's ``deploy`` needs the version.

``deploy`` asks every node to roll the verdict's version out (the admin ``deploy`` op of
`tars evolve deploy`) with the script's own plan (its strategy and steps:
``canary(steps=[1, 10, 50, 100])``), checked first by
:func:`evolution.rollout_plan.make_plan`; a plan that does not hold, or a node that
refuses, is an error at the ``deploy``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from cli.run_campaign import Campaign, script_plan
from evolution.errors import TarsError, TransportError
from evolution.lang import ast as A
from evolution.lang.values import Rec, rec

#: seconds between two reads of the swarm's log
POLL = 0.5


def _verdict(data: dict[str, Any], genome: str, version: str | None) -> tuple[Rec, Rec]:
    patch = rec("Patch", diff="", files=[], lines=0)  # the admin read leaves patches out
    candidate = rec("Candidate", id=str(data.get("candidate", "")), genome=genome,
                    parent=str(data.get("parent", "")), mutator=str(data.get("mutator", "")),
                    function=str(data.get("kind", "")), patch=patch)  # fmt: skip
    head = rec("Version", id=version, parent=data.get("parent"), fitness=None, message="")
    verdict = rec(
        "Verdict",
        candidate=candidate,
        accepted=data.get("verdict") == "adopt" and version is not None,
        held=data.get("verdict") == "hold",
        gain=float(data.get("ratio") or 0.0),
        low=float(data.get("low") or 0.0),
        high=float(data.get("high") or 0.0),
        reason="; ".join(str(r) for r in data.get("reasons") or []),
        version=head if version is not None else None,
    )
    return candidate, verdict


class SwarmCampaign(Campaign):
    """A campaign that follows a swarm's ledger instead of running cycles itself."""

    def follow(self, config_path: Path, wait: float) -> None:
        """Read the log until ``cycles`` more cycles are committed (or ``wait`` seconds pass)."""
        from rich.progress import MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

        from runtime.config import load_cluster

        self.config = load_cluster(config_path)
        self.waiting = ""
        #: this cycle's evaluated candidates and its proposal (id, version) so far
        self.pending: list[dict[str, Any]] = []
        self.proposed: tuple[str, str] | None = None
        #: completed cycles whose proposal waits for the swarm: proposal -> (version, candidates)
        self.deciding: dict[str, tuple[str, list[dict[str, Any]]]] = {}
        name = str(self._blank().get("name"))
        cycles = int(self.set.get("cycles", 5))
        after = self._last_seq(name)
        seen = 0
        deadline = time.monotonic() + wait
        columns = (SpinnerColumn(), TextColumn("{task.description}"), MofNCompleteColumn())
        with Progress(*columns, console=self.console) as bar:
            task = bar.add_task(f"{name}: following the swarm's cycles", total=cycles)
            while seen < cycles and not self.host.stopped:
                if time.monotonic() > deadline:
                    raise TransportError(
                        f"the swarm committed {seen} of {cycles} cycles of {name} in {wait:.0f} s"
                        + (f" ({self.waiting})" if self.waiting else ""),
                        hint="check `tars cluster status` (is the genome evolving?) or raise --wait",
                    )
                for row in self._rows(name, after):
                    after = row[0]
                    seen += self._take(name, row)
                    bar.update(task, completed=seen)
                if self.deciding:
                    self.waiting = f"{len(self.deciding)} cycle(s) wait for the swarm's votes"
                time.sleep(POLL)
        if "done" in self.handlers:
            self.interp.handler(self.handlers["done"], self._head(name))

    def _take(self, name: str, row: list[Any]) -> int:
        """One log row; how many cycles it completes (their handlers run)."""
        _, kind, _, version, _, _, _, data = row
        if kind == "CandidateEvaluated":
            self.pending.append(data)
        elif kind == "ProposalSubmitted":
            self.proposed = (str(data.get("proposal")), str(version))
        elif kind == "ProposalRebased" and data.get("proposal") in self.deciding:
            self.deciding[data["proposal"]] = (str(version), self.deciding[data["proposal"]][1])
        elif kind == "CycleCompleted":
            cycle, proposed, self.pending, self.proposed = self.pending, self.proposed, [], None
            if proposed is None or data.get("adopted"):
                self._handle(name, cycle, data.get("adopted"))
                return 1
            self.deciding[proposed[0]] = (proposed[1], cycle)
        elif kind == "VersionAdopted":
            for proposal, (wanted, cycle) in list(self.deciding.items()):
                if wanted == version:
                    del self.deciding[proposal]
                    self._handle(name, cycle, str(version))
                    return 1
        elif kind == "ProposalRejected" and data.get("proposal") in self.deciding:
            self._handle(name, self.deciding.pop(data["proposal"])[1], None)
            return 1
        return 0

    def _blank(self) -> Rec:
        from runtime.lang.host import genome_record

        return genome_record(self.genome_decl, self.host.base, None)

    def _ask(self, body: dict[str, Any]) -> Any:
        from cli.swarm_requests import ask

        last: Exception | None = None
        for node_id in self.config.ids:
            try:
                return ask(self.config, node_id, body, 10.0)
            except TransportError as exc:
                last = exc
        raise TransportError(
            f"no node of {self.config.path} answered ({last})",
            hint="start the swarm with `tars cluster up`",
        )

    def _rows(self, name: str, after: int) -> list[list[Any]]:
        reply = self._ask({"op": "log", "genome": name, "after": after, "limit": 500})
        if not reply.get("ok"):  # not registered yet: the leader registers it when it starts
            self.waiting = str(reply.get("error"))
            return []
        self.waiting = ""
        return list(reply["rows"])

    def _last_seq(self, name: str) -> int:
        reply = self._ask({"op": "log", "genome": name, "limit": 1})
        rows = (reply.get("rows") or []) if reply.get("ok") else []
        return int(rows[-1][0]) if rows else 0

    def _handle(self, name: str, pending: list[dict[str, Any]], adopted: str | None) -> None:
        for data in pending:
            won = adopted is not None and data.get("verdict") == "adopt"
            self.version = adopted if won else None
            candidate, verdict = _verdict(data, name, self.version)
            if "candidate" in self.handlers:
                self.interp.handler(self.handlers["candidate"], candidate)
            if "verdict" in self.handlers:
                self.interp.handler(self.handlers["verdict"], verdict)

    def _head(self, name: str) -> Rec:
        reply = self._ask({"op": "genome", "genome": name})
        base = self._blank()
        versions = reply.get("versions") or [] if isinstance(reply, dict) else []
        if not versions:
            return base
        last = versions[-1]
        head = rec(
            "Version", id=str(last[0]), parent=last[1], fitness=last[3], message=str(last[2])
        )
        return Rec("Genome", tuple((k, head if k == "head" else v) for k, v in base.fields))

    def deploy(self, strategy: str, args: dict[str, Any], pos: A.Pos) -> None:
        """Ask every node to roll the verdict's version out with the script's plan; a plan
        that does not hold (steps [50, 10]) or a node's refusal is an error here."""
        plan = script_plan(self.host, strategy, args, pos)
        if self.version is None:
            self.host.say(f"deploy {strategy}: no new version in this handler, nothing rolled out")
            return
        name = str(self._blank().get("name"))
        for node_id in self.config.ids:
            from cli.swarm_requests import ask

            try:
                body = {"op": "deploy", "genome": name, "version": self.version}
                reply = ask(self.config, node_id, {**body, "plan": plan.to_wire()}, 15.0)
            except TarsError as exc:
                reply = {"ok": False, "error": str(exc)}
            if not isinstance(reply, dict) or not reply.get("ok"):
                error = reply.get("error") if isinstance(reply, dict) else "no answer"
                raise self.host.fail(
                    pos,
                    f"{node_id} refused to deploy {self.version[:12]} of {name}: {error}",
                    "a rollout needs the genome's service on the swarm (docs/rollouts.md)",
                )
            self.deploys.append(
                f"{node_id}: rolling {name} {self.version[:12]} out by {plan.describe()}"
            )
            self.host.say(self.deploys[-1])
