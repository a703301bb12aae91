"""Profile rows that came back from an untrusted child: checked, one by one, before use.

The rows follow docs/contracts.md "Profile rows": ``file`` relative to the workdir, only
files inside it, hottest ``tottime`` first.  Anything else the child sent is dropped.
"""

from __future__ import annotations

import math
from pathlib import PurePosixPath

from runtime.sandbox_command import TMP_NAME

#: how many builtins' call counts one row may carry
_MAX_BUILTINS = 256


def valid_rows(raw: object) -> list[dict[str, object]]:
    """Keep only well-formed rows, hottest first: the JSON came from the untrusted child."""
    kept: list[tuple[float, str, int, dict[str, object]]] = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict):
            continue
        file, function, line = item.get("file"), item.get("function"), item.get("line")
        calls, tottime, cumtime = item.get("calls"), item.get("tottime"), item.get("cumtime")
        if not (
            isinstance(file, str) and isinstance(function, str) and isinstance(line, int)
            and isinstance(calls, int) and isinstance(tottime, int | float)
            and isinstance(cumtime, int | float)
        ):  # fmt: skip
            continue
        path = PurePosixPath(file)
        if not file or path.is_absolute() or ".." in path.parts or path.parts[0] == TMP_NAME:
            continue
        row: dict[str, object] = {
            "file": file, "function": function, "line": line, "calls": calls,
            "tottime": float(tottime), "cumtime": float(cumtime),
        }  # fmt: skip
        builtin, counts = item.get("builtin"), item.get("builtin_calls")
        is_number = isinstance(builtin, int | float) and not isinstance(builtin, bool)
        figure = float(builtin) if is_number else math.nan  # type: ignore[arg-type]
        if math.isfinite(figure) and figure >= 0:
            row["builtin"] = figure
        if isinstance(counts, dict):
            row["builtin_calls"] = {
                name: count
                for name, count in list(counts.items())[:_MAX_BUILTINS]
                if isinstance(name, str) and len(name) <= 200 and type(count) is int and count >= 0
            }
        kept.append((-float(tottime), file, line, row))
    kept.sort(key=lambda k: k[:3])
    return [k[3] for k in kept]


__all__ = ["valid_rows"]
