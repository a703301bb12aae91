"""The parent's test run as the yardstick of a candidate's: how many tests it ran.

A candidate's passing test run counts only if it ran as many tests as the same command
on its parent, skipping no more (:mod:`evolution.test_summary` says why).  The parent's
figure is read once per version and command, like its instruction count: shared by the
incubator pool's threads, hence the lock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence

from evolution.test_summary import SuiteSummary, fewer_tests, summary
from evolution.tree import version_id
from runtime.sandbox import RunResult, Sandbox, SandboxLimits

_SIZE = 64
_lock = threading.Lock()
_seen: OrderedDict[tuple[str, tuple[str, ...]], SuiteSummary | None] = OrderedDict()


def parent_tests(
    sandbox: Sandbox,
    tree: Mapping[str, str],
    command: Sequence[str],
    limits: SandboxLimits,
) -> SuiteSummary | None:
    """The summary of ``command`` on the parent ``tree`` (None: failed, or not readable).

    Run once per version and command, like the parent's count, and not booked on any
    candidate's tally: it is the version's cost, not the candidate's."""
    key = (version_id(dict(tree)), tuple(command))
    with _lock:
        if key in _seen:
            _seen.move_to_end(key)
            return _seen[key]
    with sandbox.workspace(tree) as workdir:
        result = sandbox.run(workdir, list(command), limits)
    got = summary(result.stdout, result.stderr) if result.ok else None
    with _lock:
        _seen[key] = got
        while len(_seen) > _SIZE:
            _seen.popitem(last=False)
    return got


def forget_parent_tests() -> None:
    """Empty the cache (a test that changes a parent's tests under one version id)."""
    with _lock:
        _seen.clear()


def bypassed(
    sandbox: Sandbox,
    parent_tree: Mapping[str, str],
    command: Sequence[str],
    result: RunResult,
    limits: SandboxLimits,
) -> str | None:
    """Why ``result``, a passing run of ``command`` on a candidate, does not count (None:
    it does): it ran fewer tests than the same command on ``parent_tree``, or skipped more."""
    parent = parent_tests(sandbox, parent_tree, command, limits)
    return fewer_tests(parent, summary(result.stdout, result.stderr))


def not_passed(
    sandbox: Sandbox,
    parent_tree: Mapping[str, str],
    command: Sequence[str],
    result: RunResult,
    limits: SandboxLimits,
) -> str | None:
    """Why ``result`` does not count as a pass: its failure, or :func:`bypassed`'s reason."""
    if not result.ok:
        return result.detail
    return bypassed(sandbox, parent_tree, command, result, limits)
