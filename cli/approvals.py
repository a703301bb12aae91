"""Approval the swarm honours, from a person's side: list what waits, sign a decision.

:func:`held` and :func:`decide` are the library the CLI, the dashboard and the MCP server
call (keep their names and signatures: other rooms depend on them).  Both ask any node of
cluster.yml that answers, over its admin channel (as `tars rollback --config` does).  The
decision is an ``approval`` ledger entry signed here, with the approver's Ed25519 secret
from the keys folder (``<keys>/<name>.key_secret``, made by `tars keys --id NAME`): the
secret never leaves this process; the swarm adopts once the quorum is committed
(docs/approval.md).  This lives in ``cli/`` because it builds a ``consensus`` entry, which
``runtime/`` may not import.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evolution.errors import ConfigError, PolicyError, TransportError

if TYPE_CHECKING:
    from rich.console import Console

    from consensus.signing import Signer
    from runtime.config import ClusterConfig

__all__ = ["decide", "held", "set_approvers", "show_held", "signer_for"]


def _config(config: ClusterConfig | Path | str) -> ClusterConfig:
    from runtime.config import load_cluster

    return load_cluster(Path(config)) if isinstance(config, str | Path) else config


def _ask(config: ClusterConfig, body: dict[str, Any], timeout: float = 15.0) -> dict[str, Any]:
    """The first answer of any node, in cluster.yml's order; a TransportError if none answers."""
    from runtime.launcher import admin_request

    errors = []
    for node_id in config.ids:
        try:
            reply: dict[str, Any] = admin_request(config, node_id, body, timeout=timeout)
        except TransportError as exc:
            errors.append(f"{node_id}: {exc.message}")
            continue
        return {**reply, "node": node_id}
    raise TransportError(
        f"no node of {config.path} answered ({'; '.join(errors)})",
        hint="start the swarm with `tars cluster up`",
    )


def held(config: ClusterConfig | Path | str, genome: str | None = None) -> list[dict[str, Any]]:
    """Every held candidate (of ``genome``, else of every genome), waiting or rejected.

    Each is a dict: ``genome``, ``candidate``, ``parent``, ``stale`` (held against an older
    head), ``mutator``, ``rules`` (the policy rules that held it), ``reasons``, ``patch``
    (a unified diff), ``evidence`` (ratio, low, high, tests_passed, …), ``approvals`` and
    ``rejected_by`` (approver names so far) and ``rejected`` (a rejection is final).
    """
    reply = _ask(_config(config), {"op": "held", "genome": genome})
    if not reply.get("ok"):
        raise PolicyError(str(reply.get("error")), hint=reply.get("hint"))
    found: list[dict[str, Any]] = reply["held"]
    for item in found:
        item["quorum"] = reply.get("quorum", 1)
    return found


def decide(
    config: ClusterConfig | Path | str,
    genome: str,
    candidate: str,
    decision: str,
    approver: str,
    reason: str = "",
    *,
    signer: Signer | None = None,
) -> dict[str, Any]:
    """Sign ``approver``'s ``decision`` ("approve" or "reject") on a held candidate and
    commit it; the swarm's answer: ``index``, ``adopted``, ``approvals``, ``quorum``, ``head``.

    Raises ConfigError when ``approver`` is no approver of cluster.yml or its secret key
    is not in the keys folder, PolicyError (with the node's hint) when the swarm refuses,
    TransportError when no node answers.
    """
    from consensus.approvals import DECISIONS, approval_entry

    chosen = _config(config)
    if decision not in DECISIONS:
        raise PolicyError(
            f"unknown decision {decision!r}", hint="decide approve or reject (`--reject`)"
        )
    if signer is None:
        signer = signer_for(chosen, approver)
    elif signer.name != approver:
        raise ConfigError(
            f"the key loaded here signs as {signer.name}, not as {approver}",
            hint=f"load {approver}'s key (`--approver {approver}`) where it is kept",
        )
    entry = approval_entry(
        genome, candidate, decision, approver, reason, time.time(), signer=signer
    )
    reply = _ask(chosen, {"op": "decide", "entry": entry})
    if not reply.get("ok"):
        raise PolicyError(f"the swarm refused: {reply.get('error')}", hint=reply.get("hint"))
    return reply


def set_approvers(
    config: ClusterConfig | Path | str, names: list[str], quorum: int
) -> dict[str, Any]:
    """Commit an admin-signed ``approvers`` entry: ``names`` with the public keys cluster.yml
    records for them (`tars keys --id NAME`), and ``quorum``; from then on every node judges
    approvals with these, whatever its own cluster.yml says (docs/approval.md).

    Signed here with the admin's secret when this machine holds it, else by the node's
    admin key.  Raises ConfigError for a name that is a node or has no recorded key,
    PolicyError when the swarm refuses, TransportError when no node answers.
    """
    from consensus.approvals import approvers_entry
    from consensus.signing import Signer
    from runtime.keys import encode_sign_key

    chosen = _config(config)
    nodes = sorted(set(names) & set(chosen.ids))
    if nodes:
        raise ConfigError(
            f"{', '.join(nodes)} is a node of {chosen.path}: a node can never be an approver",
            hint="name people listed under approval.approvers",
        )
    for name in names:
        if name != "admin" and name not in chosen.approvers:
            raise ConfigError(
                f"{name!r} is not listed under approval.approvers in {chosen.path}",
                hint=f"list it there, then run `tars keys --config {chosen.path} --id {name}`",
            )
    keys = {name: encode_sign_key(chosen.sign_key(name)) for name in names}
    try:
        admin: Signer | None = Signer("admin", chosen.sign_secret("admin"))
    except (ConfigError, OSError):
        admin = None  # the node signs with its admin key, if it holds one
    body: dict[str, Any] = {"op": "approvers", "keys": keys, "quorum": quorum}
    if admin is not None:
        body = {
            "op": "approvers",
            "entry": approvers_entry(keys, quorum, time.time(), signer=admin),
        }
    reply = _ask(chosen, body)
    if not reply.get("ok"):
        raise PolicyError(f"the swarm refused: {reply.get('error')}", hint=reply.get("hint"))
    return reply


def signer_for(config: ClusterConfig | Path | str, approver: str) -> Signer:
    """``approver``'s signing key from this machine's keys folder, checked against the key
    cluster.yml records, so a decision is refused here, not by every node, when it is wrong.

    Raises ConfigError when ``approver`` is no approver of cluster.yml, or its secret is not
    here, or is not the key cluster.yml records.  Loaded once by a long-running signer (the
    dashboard, the MCP server), it fails at start rather than at the first decision.
    """
    from consensus.signing import Signer

    chosen = _config(config)
    if approver not in chosen.approvers:
        raise ConfigError(
            f"{approver!r} is not an approver of {chosen.path} "
            f"(approvers: {', '.join(chosen.approvers)})",
            hint="list the name under approval.approvers, then run `tars keys --id NAME`",
        )
    signer = Signer(approver, chosen.sign_secret(approver))
    if signer.public != chosen.sign_key(approver):
        raise ConfigError(
            f"the signing secret of {approver} in {chosen.keys_dir} is not the key "
            f"{chosen.path} records for {approver}",
            hint=f"run `tars keys --config {chosen.path} --id {approver}` to record it",
        )
    return signer


def show_held(items: list[dict[str, Any]], console: Console) -> None:
    """What waits, as `tars approve --list` prints it: evidence, rules, approvals, the diff."""
    from rich.panel import Panel
    from rich.syntax import Syntax
    from rich.text import Text

    if not items:
        console.print("nothing is held for approval")
        return
    for item in items:
        ev = item.get("evidence") or {}
        quorum = item.get("quorum", 1)
        if item.get("rejected"):
            state = f"[red]rejected by {', '.join(item['rejected_by'])} (final)[/]"
        elif item.get("stale"):
            state = "[yellow]stale: held against an older head (prove it again)[/]"
        else:
            state = f"[green]waiting: {len(item['approvals'])} of {quorum} approvals[/]"
        lines = Text.from_markup(
            f"[bold]{item['genome']}[/] candidate [bold]{item['candidate']}[/] "
            f"by {item.get('mutator') or '?'} — {state}\n"
        )
        lines.append(f"evidence: {_figures(ev)}\n")
        lines.append(f"held by: {', '.join(item.get('rules') or []) or '-'}\n")
        for why in item.get("reasons") or []:
            lines.append(f"  · {why}\n")
        lines.append(f"approvals so far: {', '.join(item['approvals']) or 'none'}")
        console.print(Panel(lines, expand=False))
        console.print(Syntax(item.get("patch") or "", "diff", theme="ansi_dark", word_wrap=True))


def _figures(ev: dict[str, Any]) -> str:
    ratio, low, high = ev.get("ratio"), ev.get("low"), ev.get("high")
    parts = []
    if isinstance(ratio, int | float):
        parts.append(f"ratio {ratio:.3f}×")
    if isinstance(low, int | float) and isinstance(high, int | float):
        parts.append("exact count" if low == high else f"interval {low:.3f}×–{high:.3f}×")
    if "tests_passed" in ev:
        parts.append("tests passed" if ev["tests_passed"] else "TESTS FAILED")
    if ev.get("patch_lines") is not None:
        parts.append(f"{ev['patch_lines']} lines")
    if ev.get("new_imports"):
        parts.append(f"new imports {', '.join(ev['new_imports'])}")
    return ", ".join(parts) or "-"
