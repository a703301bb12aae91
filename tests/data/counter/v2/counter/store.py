"""The counter's state, v2 layout: ``{"layout": 2, "counters": {key: {"n": n, "bumps": b}}}``.

``bumps`` counts the bumps since the key entered the v2 layout. ``code_change`` migrates
v1's layout, and v3's back (so a rollback from v3 keeps the counts).
"""

LAYOUT = "counters"


def initial() -> dict:
    return {"layout": 2, "counters": {}}


def code_change(old_version: str, state: dict) -> dict:
    if "counts" in state:  # v1
        counters = {key: {"n": n, "bumps": 0} for key, n in state["counts"].items()}
        return {"layout": 2, "counters": counters}
    return {"layout": 2, "counters": state["counters"]}


def bump(state: dict, key: str, by: int = 1) -> tuple[int, dict]:
    counters = dict(state["counters"])
    old = counters.get(key, {"n": 0, "bumps": 0})
    counters[key] = {"n": old["n"] + by, "bumps": old["bumps"] + 1}
    return counters[key]["n"], {"layout": 2, "counters": counters}


def read(state: dict, key: str) -> tuple[int, dict]:
    return state["counters"].get(key, {"n": 0})["n"], state


def bumps(state: dict, key: str) -> tuple[int, dict]:
    return state["counters"].get(key, {"bumps": 0})["bumps"], state
