"""`tars dashboard`: the web dashboard of the whole swarm of a cluster.yml (docs/dashboard.md)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from cli.common import console, handle_errors

if TYPE_CHECKING:
    from runtime.config import ClusterConfig
    from runtime.dashboard import Decide

ConfigOpt = typer.Option(Path("cluster.yml"), "--config", "-c", help="the swarm's cluster.yml")
ApproverOpt = typer.Option(
    [], "--approver", "-a",
    help="sign approve/reject for this approver (repeatable); its key must be in the keys folder here",
)  # fmt: skip


@handle_errors
def dashboard(
    config_path: Path = ConfigOpt,
    port: int = typer.Option(8470, "--port", "-p", min=0, max=65535, help="port (0: any free one)"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on"),
    approvers: list[str] = ApproverOpt,
) -> None:
    """Serve the swarm's dashboard until Ctrl-C; log in with the admin secret or a token.

    With ``--approver NAME`` a login named NAME (its token, or the admin secret for
    ``admin``) may approve and reject held candidates, signed here with NAME's key."""
    from runtime.config import load_cluster
    from runtime.dashboard import DashboardServer, for_swarm

    config = load_cluster(config_path)
    decide, signs_for = approving(config, approvers)
    server = DashboardServer(for_swarm(config, decide=decide, signs_for=signs_for), host, port)
    server.start()
    signing = f"; signs decisions for {', '.join(sorted(signs_for))}" if signs_for else ""
    console.print(
        f"dashboard of {config.name} on {server.url}{signing}\nlog in with the admin secret "
        f"({config.keys_dir}/admin.key_secret) or a token (`tars keys --token NAME`); Ctrl-C stops",
        highlight=False, markup=False,
    )  # fmt: skip
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def approving(config: ClusterConfig, names: list[str]) -> tuple[Decide | None, frozenset[str]]:
    """The dashboard's ``decide`` and the approvers it signs for: each name's signing key is
    loaded and checked now (a wrong or missing key stops `tars dashboard` at once), kept in
    this process only, and used for a login of that name alone."""
    from cli.approvals import decide, signer_for

    signers = {name: signer_for(config, name) for name in dict.fromkeys(names)}
    if not signers:
        return None, frozenset()

    def signed(genome: str, candidate: str, decision: str, approver: str, reason: str) -> dict[str, Any]:  # fmt: skip
        from evolution.errors import ConfigError

        signer = signers.get(approver)
        if signer is None:
            raise ConfigError(f"this dashboard holds no signing key for {approver}",
                              hint=f"start it with `--approver {approver}` where that key is")  # fmt: skip
        return decide(config, genome, candidate, decision, approver, reason, signer=signer)

    return signed, frozenset(signers)
