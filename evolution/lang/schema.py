"""What a campaign, a genome and a data source may say: the keys, their types, the events.

The checker holds scripts to these tables and the interpreter reads them the same way:
a key added here is a key both know.
"""

from __future__ import annotations

from evolution.lang.types import ANY, BOOL, FLOAT, INT, STR, ListT, Named, Ty

#: Source kinds: how many type arguments, whether the first is a format, and the formats.
FORMATS = {"file": ("jsonl", "json", "csv"), "http": ("json", "jsonl")}
LOCATED = ("file", "csv", "http", "any")  # `= "location"`; sql and mcp take arguments

#: Settings of an `evolve` block and of its groups: key -> type.
EVOLVE_KEYS: dict[str, Ty] = {
    "functions": ListT(STR),
    "mutators": ListT(STR),
    "models": ListT(STR),
    "prompt": ANY,  # a prompt block, checked on its own
    "cycles": INT,
    "candidates": INT,
    "seed": INT,
    "llm": STR,  # the llm.yml of the models (docs/llm.md), relative to the script
    "input": ANY,  # a source whose records the benchmark reads, checked on its own
    "improve_self": BOOL,  # evolve the script's own `tune` parameters too
}
GROUPS: dict[str, dict[str, Ty]] = {
    "fitness": {"metric": STR, "direction": STR, "threshold": FLOAT, "confidence": FLOAT},
    "limits": {
        "wall_seconds": FLOAT,
        "memory_mb": INT,
        "peak_memory_mb": FLOAT,
        "budget_tokens": INT,
        "max_requests": INT,
    },
    # the tune search's proof (improve_self): repeats per value set, trials per run
    "tuning": {"repeats": INT, "trials": INT},
    "approve": {
        "max_patch_lines": INT,
        "new_imports": BOOL,
        "protected": BOOL,
        "model": BOOL,
        "above": FLOAT,
    },
}
#: Events a campaign's `on` handlers may follow, and the value each hands in.
EVENTS: dict[str, Ty] = {
    "candidate": Named("Candidate"),
    "verdict": Named("Verdict"),
    "rollout": Named("Rollout"),
    "done": Named("Genome"),
}
GENOME_KEYS: dict[str, Ty] = {
    "sources": ListT(STR),
    "test": STR,
    "bench": STR,
    "metric": STR,
    "direction": STR,
    "description": STR,
    "threshold": FLOAT,
}
GENOME_REQUIRED = ("sources", "test", "bench", "metric", "direction")
