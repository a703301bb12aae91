"""pykka actors, one role per module; the public names are re-exported here.

Loaded lazily (like ``consensus``): ``import actors.messages`` must not start importing
every role, the sandbox and the ledger with it.  Messages are in ``actors.messages``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from actors.analyzer import Analyzer
    from actors.coordinator import Coordinator, CycleResult, Recorder, RunSummary
    from actors.evolver import Evolver, baseline
    from actors.generator import Generator
    from actors.governor import Governor
    from actors.incubator import Incubator
    from actors.planner import Planner
    from actors.spread import Spread
    from actors.supervisor import SupervisionError, Supervisor
    from actors.validator import Validator
    from actors.voter import Voter, Votes

_HOMES = {
    "Analyzer": "analyzer",
    "Coordinator": "coordinator",
    "CycleResult": "coordinator",
    "Recorder": "coordinator",
    "RunSummary": "coordinator",
    "Evolver": "evolver",
    "baseline": "evolver",
    "Generator": "generator",
    "Governor": "governor",
    "Incubator": "incubator",
    "Planner": "planner",
    "Spread": "spread",
    "SupervisionError": "supervisor",
    "Supervisor": "supervisor",
    "Validator": "validator",
    "Voter": "voter",
    "Votes": "voter",
}

__all__ = [
    "Analyzer",
    "Coordinator",
    "CycleResult",
    "Evolver",
    "Generator",
    "Governor",
    "Incubator",
    "Planner",
    "Recorder",
    "RunSummary",
    "Spread",
    "SupervisionError",
    "Supervisor",
    "Validator",
    "Voter",
    "Votes",
    "baseline",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'actors' has no attribute {name!r}")
    return getattr(importlib.import_module(f"actors.{home}"), name)
