"""Defence in depth: the node's own secrets never leave a run's output.

The jail makes the node's key files unreadable; still, a run's output becomes evidence
in events replicated to every node, so whatever the node is told is secret (its key
files' contents) is replaced by ``[secret removed]`` before a :class:`RunResult` is
made.  A key file is matched whole, line by line and by its quoted values (a CurveZMQ
secret key file holds ``secret-key = "<40 characters>"``), so printing the key alone is
caught too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

SECRET_REMOVED = "[secret removed]"
#: shorter pieces are not matched on their own (they would scrub ordinary text)
MIN_SECRET = 16
_QUOTED = re.compile(r"\"([^\"\n]+)\"|'([^'\n]+)'")


def secret_needles(secrets: Iterable[str]) -> tuple[str, ...]:
    """What to look for: each secret whole, its lines and its quoted values, longest first."""
    found: set[str] = set()
    for secret in secrets:
        pieces = [secret, *secret.splitlines()]
        pieces += [a or b for a, b in _QUOTED.findall(secret)]
        found.update(piece.strip() for piece in pieces)
    return tuple(sorted((p for p in found if len(p) >= MIN_SECRET), key=len, reverse=True))


def scrub(text: str, needles: tuple[str, ...]) -> str:
    """``text`` with every needle replaced by ``[secret removed]``."""
    for needle in needles:
        if needle in text:
            text = text.replace(needle, SECRET_REMOVED)
    return text


__all__ = ["MIN_SECRET", "SECRET_REMOVED", "scrub", "secret_needles"]
