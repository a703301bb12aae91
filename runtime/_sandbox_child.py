"""Runs inside the sandbox: a script or ``-m`` module under cProfile, rows out as JSON.

Why not ``python -m cProfile``: it swallows ``SystemExit`` (a failing benchmark would
exit 0) and writes a marshal file, which the parent should not load from an untrusted
child.  Here the exit status is kept and the rows leave as plain JSON.

Usage: ``python _sandbox_child.py OUT [--events] script.py ARGS...`` or ``... OUT -m mod ARGS...``,
where OUT is ``fd:N`` (a pipe the sandbox reads: the jail's files never reach the host)
or a file path.

With ``--events`` the profiler's clock counts profiler events (calls and returns of Python
and C functions) instead of reading the time: a cruder measure of where the work is, but
the same on every run, so a plan ranked from it is too.
Stdlib only, and nothing from TARS: it runs with the candidate's view of the world.
"""

from __future__ import annotations

import cProfile
import itertools
import json
import os
import pstats
import runpy
import sys


def _rows(profiler: cProfile.Profile, base: str) -> list[dict[str, object]]:
    """Rows for code in files under ``base`` (the workdir), paths relative to it."""
    stats = pstats.Stats(profiler)
    rows: list[dict[str, object]] = []
    prefix = base.rstrip(os.sep) + os.sep
    # a C function's (``~``) own time, by the Python function that called it: a Python
    # row's tottime leaves out the builtins its lines call (``sorted(...)[0]``), which a
    # rewrite of those lines can remove, so each row also carries that time ("builtin")
    # and how often it called each (``sorted``: 1859): how many times a site that is a C
    # call runs, which the rewrite priors weigh what they remove by (evolution/priors.py)
    builtin: dict[tuple[str, int, str], float] = {}
    called: dict[tuple[str, int, str], dict[str, int]] = {}
    for (filename, _line, function), entry in stats.stats.items():  # type: ignore[attr-defined]
        if filename == "~":
            for caller, figures in entry[4].items():
                builtin[caller] = builtin.get(caller, 0.0) + float(figures[2])
                counts = called.setdefault(caller, {})
                counts[function] = counts.get(function, 0) + int(figures[1])
    for (filename, line, function), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if not filename or filename.startswith("<") or filename == "~":
            continue
        path = os.path.realpath(os.path.join(base, filename))
        if not path.startswith(prefix):
            continue
        rows.append({
            "file": os.path.relpath(path, base).replace(os.sep, "/"),
            "function": function, "line": line, "calls": calls,
            "tottime": tottime, "cumtime": cumtime,
            "builtin": builtin.get((filename, line, function), 0.0),
            "builtin_calls": called.get((filename, line, function), {}),
        })  # fmt: skip
    return rows


def _write(out: str, rows: list[dict[str, object]]) -> None:
    """The rows as JSON to ``fd:N`` (closed after) or to a file."""
    if out.startswith("fd:"):
        with os.fdopen(int(out[3:]), "w", encoding="utf-8") as fh:
            json.dump(rows, fh)
        return
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(rows, fh)


def main(argv: list[str]) -> int:
    """Run the target as ``python`` would (same sys.path[0], same argv), profiled."""
    out, target = argv[0], argv[1:]
    events = target[:1] == ["--events"]
    if events:
        target = target[1:]
    base = os.path.realpath(os.getcwd())
    if target[:1] == ["-m"]:
        sys.argv = target[1:]
        sys.path[0] = base  # what `python -m` puts first
    else:
        sys.argv = target
        sys.path[0] = os.path.dirname(os.path.abspath(target[0]))
    profiler = cProfile.Profile(itertools.count().__next__, 1.0) if events else cProfile.Profile()
    code: int = 0
    try:
        profiler.enable()
        if target[:1] == ["-m"]:
            runpy.run_module(target[1], run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(target[0], run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    finally:
        profiler.disable()
        _write(out, _rows(profiler, base))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
