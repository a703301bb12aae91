"""The seam between a node's running service and the Deployer that rolls versions out.

The service (workers, router, front) implements :class:`ServiceControl`; the Deployer
(``actors/deployer.py``) only ever talks to it through this protocol, so the rollout's
decisions stay pure and testable, and the service never decides anything on its own.

Colours follow blue/green: ``blue`` serves the current version, ``green`` the version
being rolled out. Weights are the share of live requests (0.0 to 1.0) routed to green;
``mirror`` is the share of requests also sent to the other colour and compared.
"""

from __future__ import annotations

from typing import Literal, NamedTuple, Protocol

from evolution.tree import Tree

Colour = Literal["blue", "green"]


class ColourWindow(NamedTuple):
    """One colour's figures over one analysis window (since the previous ``window()``)."""

    version: str | None
    requests: int
    errors: int
    #: latency percentiles in seconds over the window (0.0 when no request was served)
    p50: float
    p99: float


class Window(NamedTuple):
    """Both colours over the same window, plus the mirrored comparisons made in it."""

    blue: ColourWindow
    green: ColourWindow
    #: mirrored requests whose two answers were compared in this window
    mirrored: int
    #: of those, how many answered differently (output inequality)
    mismatches: int
    #: up to a few examples: (function, request arguments as JSON text, why they differ)
    examples: tuple[tuple[str, str, str], ...]
    #: the window's length in seconds
    seconds: float


class ServiceControl(Protocol):
    """What the Deployer may ask of one node's service for one genome."""

    def serving(self, genome: str) -> dict[Colour, str]:
        """Which version each colour runs now (green absent when no rollout runs)."""
        ...

    def start_green(self, genome: str, version: str, tree: Tree, ready_timeout: float) -> None:
        """Start green workers on ``tree``; return once they answer a readiness probe.

        Raises :class:`evolution.errors.ServiceError` when green is not ready in time (green
        is then stopped and blue keeps all the traffic).
        """
        ...

    def set_weight(self, genome: str, green: float) -> None:
        """Route this share (0.0–1.0) of live requests to green; the rest go to blue."""
        ...

    def set_mirror(self, genome: str, share: float) -> None:
        """Also send this share of live requests to the other colour and compare answers."""
        ...

    def window(self, genome: str) -> Window:
        """The figures since the previous call (each call starts a new window)."""
        ...

    def promote(self, genome: str) -> None:
        """Green becomes blue and takes all traffic; the old blue drains and stops."""
        ...

    def abort(self, genome: str) -> None:
        """All traffic back to blue at once; green drains and stops. Loses no request."""
        ...

    def reload(self, genome: str, version: str, tree: Tree) -> None:
        """Hot reload in place (reloadable services): new calls run ``version``."""
        ...
