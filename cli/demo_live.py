"""What `tars demo` shows of the live service: a load through every adoption, the last
rollout waited for, and the summary's rows on rollouts and requests (docs/service.md)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from rich.table import Table

from cli.common import console
from evolution.errors import TarsError
from evolution.rollout import ENDED


class DemoLoad:
    """Callers on every node's front from the moment every node serves the genome."""

    def __init__(self, config: Any, genome: str) -> None:
        self.config, self.genome = config, genome
        self.load: Any = None

    def poll(self, console_print: Any) -> None:
        """Start the load once every node describes the genome's service (else next time)."""
        if self.load is not None:
            return
        from runtime.service.client import describe, http_url
        from runtime.service.load import generated_mix
        from runtime.service.steady_load import SteadyLoad

        try:
            urls = [http_url(self.config, n, ask=False) for n in self.config.ids]
            mix = [generated_mix(self.genome, describe(url, self.genome, timeout=2.0))
                   for url in urls][0]  # fmt: skip
        except TarsError:
            return
        self.load = SteadyLoad(urls, mix).start()
        console_print(
            f"  serving {self.genome} on {', '.join(urls)}: a steady load of "
            f"{self.load.rate:g} requests/s runs through every adoption (metrics: {urls[0]}/metrics)"
        )

    def stop(self) -> None:
        if self.load is not None:
            self.load.stop()


def settle(
    config: Any, genome: str, final: dict[str, dict[str, Any]], timeout: float = 180.0
) -> None:
    """After the last cycle: wait (bounded) until every node serves the head, its rollout
    promoted or ended, so the summary tells how the last adoption went live."""
    from runtime.service.client import http_url

    head = next(iter(final.values()))["heads"][genome]["version"]
    deadline = time.monotonic() + timeout
    with console.status("rolling the head out on every node…") as shown:
        while time.monotonic() < deadline:
            phases = []
            for node_id in config.ids:
                board = _rollout(config, node_id, genome)
                serving = _health(http_url(config, node_id, ask=False), genome)
                done = serving.get("blue") == head or board.get("phase") in ("aborted", "abandoned")
                phases.append((node_id, done, board.get("step"), serving.get("weight")))
            if all(done for _, done, _, _ in phases):
                return
            shown.update(
                "rolling the head out on every node: "
                + ", ".join(f"{n} step {s} at {w}" for n, d, s, w in phases if not d)
            )
            time.sleep(0.5)
    console.print("[yellow]the last rollout did not end in time: see `tars rollout status`[/]")


def _rollout(config: Any, node_id: str, genome: str) -> dict[str, Any]:
    from runtime.launcher import admin_request

    try:
        reply = admin_request(config, node_id, {"op": "rollout", "genome": genome,
                                                "order": "status"}, timeout=2.0)  # fmt: skip
    except TarsError:
        return {}
    return reply if isinstance(reply, dict) else {}


def _health(url: str, genome: str) -> dict[str, Any]:
    import httpx

    try:
        found = httpx.get(f"{url}/v1/health", timeout=2.0).json()["genomes"][genome]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return {}
    return found if isinstance(found, dict) else {}


def live_rows(table: Table, events: list[tuple[str, Any]], load: DemoLoad | None) -> None:
    """What the swarm's service did while it evolved: rollouts, requests, where metrics are.

    ``events`` are the genome's (type, data) in log order; each node's rollout steps are
    among them."""
    ended = [(d.get("phase"), d.get("result")) for kind, d in events if kind == "RolloutStepped"]
    phases = Counter(
        "failed" if result == "Failed" else phase for phase, result in ended if phase in ENDED
    )
    table.add_row(
        "rollouts (every node)",
        f"{phases['promoted']} promoted, {phases['failed']} failed and rolled back, "
        f"{phases['aborted']} superseded by a newer head, {phases['abandoned']} abandoned",
    )
    steady = load.load if load is not None else None
    if steady is not None:
        lost = sum(steady.lost.values())
        why = f" ({', '.join(f'{n} {k}' for k, n in steady.lost.most_common())})" if lost else ""
        table.add_row("requests served", f"{steady.served:,} by {len(steady.versions)} versions")
        table.add_row("requests lost", f"{'[green]' if not lost else '[red]'}{lost}[/]{why}")
        table.add_row("metrics", f"{steady.urls[0]}/metrics (while the swarm runs)")
