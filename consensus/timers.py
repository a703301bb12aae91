"""The engine's timers: :class:`runtime.config.Timers`, with the engine's own defaults.

There is one timer type, the one cluster.yml's ``cluster.timers`` validates into, so a
node can hand the file's timers to its engine as they are.  An engine built without
timers (tests, benchmarks) runs on ANCHORS.md's fastest tuning instead of the file's
defaults: election 0.15–0.3 s with a 30 ms heartbeat failed over in 0.29 s on these
machines.
"""

from __future__ import annotations

from pydantic import ValidationError

from evolution.errors import ConfigError
from runtime.config import Timers

__all__ = ["RaftTimers", "Timers"]


def RaftTimers(  # noqa: N802 (a constructor by name: node.py and the tests build it so)
    *,
    election_min: float = 0.15,
    election_max: float = 0.30,
    heartbeat: float = 0.03,
    leader_fallback: float = 0.6,
    tick: float = 0.005,
    removed_grace: float = 3.0,
) -> Timers:
    """:class:`Timers` with ANCHORS.md's defaults; bad values raise :class:`ConfigError`."""
    settings = {
        "election_min": election_min,
        "election_max": election_max,
        "heartbeat": heartbeat,
        "leader_fallback": leader_fallback,
        "tick": tick,
        "removed_grace": removed_grace,
    }
    try:
        return Timers.model_validate(settings)
    except ValidationError as exc:
        problems = "; ".join(
            (f"{'.'.join(str(p) for p in e['loc'])}: " if e["loc"] else "")
            + str(e["msg"]).removeprefix("Value error, ")
            for e in exc.errors()
        )
        shown = ", ".join(f"{k}={v:g}" for k, v in settings.items())
        raise ConfigError(
            f"invalid Raft timers ({shown}): {problems}",
            hint="e.g. RaftTimers(election_min=0.15, election_max=0.3, heartbeat=0.03)",
        ) from None
