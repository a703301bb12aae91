"""Blue and green side by side: each colour's requests, errors and mean latency on a node.

Read from the node's own ``/metrics`` (Prometheus text, parsed by prometheus_client's
parser): ``tars_requests_total`` and ``tars_request_seconds`` per genome, version and
colour (runtime/metrics.py). Reading them never disturbs the rollout: the Deployer's
analysis windows are its own, and a scrape only reads counters. The figures are totals
since the version started serving on that node, so blue's include its traffic before
the rollout began.
"""

from __future__ import annotations

import urllib.request
from typing import Any

__all__ = ["colour_figures"]


def colour_figures(
    http: str, genome: str, timeout: float = 2.0
) -> dict[tuple[str, str], dict[str, float]]:
    """``(version, colour)`` -> requests, errors, mean seconds; empty when unreadable."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(http.rstrip("/") + "/metrics", timeout=timeout) as reply:
            text = reply.read().decode("utf-8", "replace")
    except (OSError, ValueError):
        return {}
    found: dict[tuple[str, str], dict[str, float]] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = sample.labels
                if labels.get("genome") != genome or "colour" not in labels:
                    continue
                key = (labels.get("version", ""), labels["colour"])
                row = found.setdefault(
                    key, {"requests": 0.0, "errors": 0.0, "sum": 0.0, "count": 0.0}
                )
                if sample.name == "tars_requests_total":
                    row["requests"] += sample.value
                    if labels.get("outcome") == "error":
                        row["errors"] += sample.value
                elif sample.name == "tars_request_seconds_sum":
                    row["sum"] += sample.value
                elif sample.name == "tars_request_seconds_count":
                    row["count"] += sample.value
    except ValueError:
        return {}
    for row in found.values():
        row["mean_ms"] = 1000 * row["sum"] / row["count"] if row["count"] else 0.0
    return found


def with_figures(board: list[dict[str, Any]], http_of: dict[str, str | None], genome: str) -> None:
    """Add ``blue_figures`` and ``green_figures`` to each node's rollout row, in place."""
    for row in board:
        http = http_of.get(str(row.get("node")))
        figures = colour_figures(http, genome) if http else {}
        row["blue_figures"] = figures.get((str(row.get("blue") or ""), "blue"))
        row["green_figures"] = figures.get((str(row.get("version") or ""), "green"))
