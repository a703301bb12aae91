"""`tars cluster status` names every kind of frame a node dropped, and warns when a peer
pushed against the transport's per-peer bounds (docs/transport.md, "Bounded peers")."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from cli.cluster_view import bound_warning, drop_lines, print_summary


def row(node: str, up: bool = True, **counters: int) -> dict[str, Any]:
    return {
        "node": node,
        "up": up,
        "role": "follower",
        "leader": "n1",
        "members": [],
        "counters": {"sent": 10, "received": 9, "reorder_bytes": 3 << 20, **counters},
    }


def test_every_drop_kind_is_named_per_node() -> None:
    rows = [
        row("n1", dropped_reorder_bytes=997, dropped_unknown_key=2, dropped_blocked=0),
        row("n2"),
        row("n3", up=False, dropped_oversize=5),
    ]
    assert drop_lines(rows) == ["n1 dropped frames: reorder_bytes 997, unknown_key 2"]


def test_a_bound_refusal_is_a_warning_naming_the_nodes() -> None:
    assert bound_warning([row("n1", dropped_unknown_key=2)]) is None
    warning = bound_warning(
        [row("n1", dropped_backlog_bytes=1), row("n2", dropped_request_bytes=3), row("n3")]
    )
    assert warning is not None and warning.startswith("n1, n2 refused frames")
    assert "Bounded peers" in warning


def test_the_summary_prints_them_under_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    config: Any = SimpleNamespace(ids=["n1", "n2"])
    print_summary(config, [row("n1", dropped_reorder_bytes=997), row("n2")])
    out = capsys.readouterr().out
    assert "n1 dropped frames: reorder_bytes 997" in out
    assert "n1 refused frames at a per-peer bound" in out
    assert "n2 dropped" not in out


def test_every_refusal_kind_is_named_per_node(capsys: pytest.CaptureFixture[str]) -> None:
    from cli.cluster_view import refusal_lines

    rows = [
        row("n1", refused_signatures=3, refused_transfers=1, refused_admin=0),
        row("n2"),
        row("n3", up=False, refused_commands=5),
    ]
    assert refusal_lines(rows) == ["n1 refused: signatures 3, transfers 1"]
    config: Any = SimpleNamespace(ids=["n1", "n2", "n3"])
    print_summary(config, rows)
    assert "n1 refused: signatures 3, transfers 1" in capsys.readouterr().out
