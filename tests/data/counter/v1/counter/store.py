"""The counter's state, v1 layout: ``{"counts": {key: n}}``.

Stateful functions take ``state`` and return ``(result, new_state)``; they never change
the state they are given, so a call that raises leaves it as it was.
"""

LAYOUT = "counts"


def initial() -> dict:
    return {"counts": {}}


def code_change(old_version: str, state: dict) -> dict:
    """v1 is the first layout: nothing to migrate from."""
    return state


def bump(state: dict, key: str, by: int = 1) -> tuple[int, dict]:
    counts = dict(state["counts"])
    counts[key] = counts.get(key, 0) + by
    return counts[key], {"counts": counts}


def read(state: dict, key: str) -> tuple[int, dict]:
    return state["counts"].get(key, 0), state


def hold(state: dict, gate, started) -> tuple[str, dict]:
    """Block until ``gate`` is set, as a stateful call in flight (for the tests)."""
    started.set()
    gate.wait(30)
    return LAYOUT, state
