"""The counter's state, v3 layout: v2's counters plus a running ``total`` of every count.

``code_change`` migrates v1's and v2's layouts (and keeps v3's).
"""

LAYOUT = "counters+total"


def initial() -> dict:
    return {"layout": 3, "counters": {}, "total": 0}


def code_change(old_version: str, state: dict) -> dict:
    if "counts" in state:  # v1
        counters = {key: {"n": n, "bumps": 0} for key, n in state["counts"].items()}
    else:
        counters = state["counters"]
    return {"layout": 3, "counters": counters, "total": sum(c["n"] for c in counters.values())}


def bump(state: dict, key: str, by: int = 1) -> tuple[int, dict]:
    counters = dict(state["counters"])
    old = counters.get(key, {"n": 0, "bumps": 0})
    counters[key] = {"n": old["n"] + by, "bumps": old["bumps"] + 1}
    return counters[key]["n"], {"layout": 3, "counters": counters, "total": state["total"] + by}


def read(state: dict, key: str) -> tuple[int, dict]:
    return state["counters"].get(key, {"n": 0})["n"], state


def bumps(state: dict, key: str) -> tuple[int, dict]:
    return state["counters"].get(key, {"bumps": 0})["bumps"], state


def total(state: dict) -> tuple[int, dict]:
    return state["total"], state
