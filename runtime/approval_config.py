"""cluster.yml's ``approval:`` section: who may approve a held candidate, and how many must.

The governor holds a risky candidate for a person (evolution/policy.py); the person's
decision is a signed ``approval`` ledger entry (docs/approval.md).  Which names count as
approvers, and how many distinct ones must approve before the swarm adopts, is swarm
policy: every node must judge an approval alike, so it lives in the one file every node
reads, not in a node's own settings.  ``admin`` is the only approver unless the section
says otherwise, and its public key is the one ``cluster.admin_sign_key`` already records;
every other approver's public signing key is recorded under ``keys`` by ``tars keys --id
NAME`` (run where that person keeps the secret).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

ADMIN = "admin"
_NAME = r"^[a-z0-9][a-z0-9._-]*$"
_B64_KEY = r"^[A-Za-z0-9+/]{43}=$"  # a 32-byte Ed25519 public key, base64


class ApprovalSection(BaseModel):
    """``approval: {quorum: 2, approvers: [admin, alice, bob], keys: {alice: KEY, bob: KEY}}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: distinct approvers whose approval adopts a held candidate (one rejection is final)
    quorum: Annotated[int, Field(ge=1, le=64)] = 1
    approvers: Annotated[
        list[Annotated[str, Field(pattern=_NAME, max_length=63)]], Field(min_length=1)
    ] = [ADMIN]
    #: each approver's public Ed25519 key (base64); admin's is ``cluster.admin_sign_key``
    keys: dict[Annotated[str, Field(pattern=_NAME)], Annotated[str, Field(pattern=_B64_KEY)]] = {}

    @model_validator(mode="after")
    def _consistent(self) -> ApprovalSection:
        if len(set(self.approvers)) != len(self.approvers):
            raise ValueError("an approver is listed twice")
        if self.quorum > len(self.approvers):
            raise ValueError(
                f"quorum {self.quorum} is more than the {len(self.approvers)} approvers listed"
            )
        stray = sorted(set(self.keys) - set(self.approvers))
        if stray:
            raise ValueError(f"keys of {', '.join(stray)}, who are not listed under approvers")
        if ADMIN in self.keys:
            raise ValueError("admin's key is cluster.admin_sign_key, not approval.keys.admin")
        return self


class ApproverNames:
    """What :class:`~runtime.cluster_config.ClusterConfig` answers about approvers."""

    model: Any

    def _listed_sign_key(self, name: str) -> str | None:
        raise NotImplementedError  # ClusterConfig's

    def sign_key(self, name: str) -> bytes:
        raise NotImplementedError  # ClusterConfig's

    def _person(self, name: str) -> str | None:
        """``name`` when it is the admin or an approver (a person, not a node), else None."""
        return name if name == ADMIN or name in self.approvers else None

    @property
    def approvers(self) -> list[str]:
        """The names whose signed approval counts (cluster.yml ``approval.approvers``)."""
        return list(self.model.approval.approvers)

    @property
    def quorum(self) -> int:
        """How many distinct approvers must approve a held candidate (``approval.quorum``)."""
        return int(self.model.approval.quorum)

    def approver_keys(self) -> dict[str, bytes]:
        """Every approver's recorded public signing key; one with none recorded yet is left
        out (its approvals cannot count until `tars keys --id NAME` records the key)."""
        found: dict[str, bytes] = {}
        for name in self.approvers:
            if self._listed_sign_key(name) is not None:
                found[name] = self.sign_key(name)
        return found
