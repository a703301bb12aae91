"""Hot reload in a worker, as Erlang/OTP does it: two version slots, soft purge, code_change.

A worker of a reloadable genome (``[service] reloadable = true``) loads its code through
:class:`VersionSlots` instead of ``code.LoadedCode`` (same ``load`` and ``call``). Each
version is imported in isolation (``isolated.py``); a load makes the new version current
at once while calls in flight finish on the old one; at most two versions are loaded, a
third waits for the old one to drain and is refused after ``purge_timeout`` (no call is
ever killed); a stateful genome's state is held here, handed to functions taking
``state`` (they return ``(result, new_state)`` and run one at a time) and migrated by
the new version's ``code_change`` while stateful calls are suspended. Each version's
hooks come from its own ``genome.toml``. docs/hot-reload.md has the semantics and limits.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from runtime.service.isolated import (
    Hooks,
    IsolatedModules,
    ServiceError,
    Target,
    parse_target,
    read_hooks,
)


class SlotsStatus(NamedTuple):
    """The slots at one instant (for health, metrics and tests)."""

    current: str | None
    old: str | None
    old_in_flight: int
    in_flight: int
    loads: int
    #: stateful calls are suspended (a load is migrating the state)
    suspended: bool
    #: the longest and the last suspension of stateful calls by a load, in seconds
    longest_pause: float
    last_pause: float


def _parameters(func: Callable[..., Any]) -> tuple[str, ...]:
    """The names a callable takes (none known for a callable without a signature)."""
    try:
        return tuple(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return ()


@dataclass(eq=False)
class _Slot:
    """One loaded version: its modules, hooks, resolved functions and calls in flight."""

    version: str
    code: IsolatedModules
    hooks: Hooks
    in_flight: int = 0
    #: purged (or closed): no call enters any more
    retired: bool = False
    #: guards in_flight and retired; calls never take the slots' condition, so a load's
    #: suspension window never waits behind the stateless calls' traffic
    lock: threading.Lock = field(default_factory=threading.Lock)
    functions: dict[Target, tuple[Callable[..., Any], bool]] = field(default_factory=dict)


class VersionSlots:
    """A worker's code with OTP hot reload: current and old versions, state, code_change."""

    def __init__(self, *, purge_timeout: float = 5.0, suspend_timeout: float = 5.0) -> None:
        self.purge_timeout = purge_timeout
        self.suspend_timeout = suspend_timeout
        self._cond = threading.Condition()  # guards the slots, counts and the suspension
        self._load_lock = threading.Lock()  # one load at a time
        self._state_lock = threading.Lock()  # stateful calls one at a time; a load's swap
        self._current: _Slot | None = None
        self._old: _Slot | None = None
        self._state: Any = None
        self._suspended = False
        self._loads = 0
        self._pauses = (0.0, 0.0)

    # -- calls ---------------------------------------------------------------------------

    def call(self, module: str, function: str, kwargs: dict[str, Any]) -> Any:
        """Run ``module:function(**kwargs)`` on the current version (thread-safe).

        A stateless call runs concurrently with any other; a stateful one is passed the
        state and runs alone. Exceptions the genome's code raises propagate unchanged.
        """
        slot = self._enter()
        try:
            func, stateful = self._resolve(slot, module, function)
            if not stateful:
                return func(**kwargs)
        finally:
            self._leave(slot)
        return self._call_stateful(module, function, kwargs)

    def _call_stateful(self, module: str, function: str, kwargs: dict[str, Any]) -> Any:
        if "state" in kwargs:
            raise ServiceError(
                f"{module}:{function}: 'state' is not an argument a caller may pass",
                hint="the service holds a stateful genome's state and passes it itself; drop 'state'",
            )
        # the flag is read without the lock: a load that suspends just after is still safe,
        # since the version is checked again under the state lock
        if self._suspended and not self._wait_resumed():
            raise ServiceError(
                f"{module}:{function}: calls stayed suspended over {self.suspend_timeout} s",
                hint="a load's code_change is still running; retry, or look at that hook",
            )
        with self._state_lock:
            # under the state lock the current version cannot change: a load swaps under it
            slot = self._enter()
            try:
                func, stateful = self._resolve(slot, module, function)
                if not stateful:  # the version now current dropped the state parameter
                    return func(**kwargs)
                out = func(state=self._state, **kwargs)
                if not (isinstance(out, tuple) and len(out) == 2):
                    raise ServiceError(
                        f"{module}:{function} of version {slot.version} returned {type(out).__name__}",
                        hint="a function taking 'state' returns a (result, new_state) pair; the state is unchanged",
                    )
                self._state = out[1]
                return out[0]
            finally:
                self._leave(slot)

    def _wait_resumed(self) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: not self._suspended, self.suspend_timeout)

    def _enter(self) -> _Slot:
        while True:
            slot = self._current
            if slot is None:
                raise ServiceError(
                    "no version is loaded in this worker",
                    hint="load(version, root) before the first call",
                )
            with slot.lock:
                if not slot.retired:  # else it was swapped out and purged since: read again
                    slot.in_flight += 1
                    return slot

    def _leave(self, slot: _Slot) -> None:
        with slot.lock:
            slot.in_flight -= 1
        if slot is self._old:  # (a load that has not set _old yet checks after its swap)
            self._purge_if_drained(slot)

    def _purge_if_drained(self, slot: _Slot) -> None:
        """The purge, once: the old version's last call has returned."""
        with slot.lock:
            if slot.in_flight or slot.retired:
                return
            slot.retired = True
        with self._cond:
            if self._old is slot:
                self._old = None
            self._cond.notify_all()
        slot.code.drop()  # outside the locks: dropping waits for any import in the process

    def _resolve(self, slot: _Slot, module: str, function: str) -> tuple[Callable[..., Any], bool]:
        found = slot.functions.get((module, function))
        if found is not None:
            return found
        target = f"{module}:{function}"
        if not slot.code.owns(module) or function.startswith("_"):
            raise ServiceError(
                f"{target} is not a public function of version {slot.version}'s tree",
                hint="a call names a module of the genome's own sources and a public function in it",
            )
        parse_target(target, "call")
        try:
            func = getattr(slot.code.module(module), function, None)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            func = None
        if not callable(func):
            raise ServiceError(
                f"{target}: no such function in version {slot.version}",
                hint="check the name against the manifest's [service.functions]",
            )
        if not slot.code.owns(str(getattr(func, "__module__", None) or "")):
            # e.g. `from os import system` in a genome module: callable, but not the genome's
            raise ServiceError(
                f"{target} is defined in {getattr(func, '__module__', None)!r}, not in the genome's tree",
                hint="only functions and classes defined in the genome's own modules can be called",
            )
        stateful = slot.hooks.state is not None and "state" in _parameters(func)
        slot.functions[(module, function)] = (func, stateful)
        return func, stateful

    # -- loads ---------------------------------------------------------------------------

    def load(self, version: str, root: Path) -> None:
        """Make ``version`` (its tree at ``root``) current; loading the current one again does nothing.

        Raises ServiceError, leaving the version that serves and its state as they were,
        when the old version's calls do not drain within ``purge_timeout``, when the new
        tree does not import, or when its ``code_change`` (or initial ``state``) raises.
        """
        with self._load_lock:
            with self._cond:
                if self._current is not None and self._current.version == version:
                    return
            self._soft_purge(version)
            slot = self._import(version, Path(root))
            try:
                self._switch(slot)
            except BaseException:
                slot.code.drop()
                raise

    def _soft_purge(self, version: str) -> None:
        with self._cond:
            if self._cond.wait_for(lambda: self._old is None, self.purge_timeout):
                return
            busy = self._old
            assert busy is not None
            raise ServiceError(
                f"cannot load version {version}: the old version {busy.version} still has "
                f"{busy.in_flight} call(s) in flight after {self.purge_timeout} s",
                hint="at most two versions are loaded (current and old, as in Erlang/OTP) and calls "
                "are never killed; retry once the old version's calls have returned",
            )

    def _import(self, version: str, root: Path) -> _Slot:
        if not root.is_dir():
            raise ServiceError(
                f"version {version}: {root} is not a folder", hint="load a version's extracted tree"
            )
        hooks = read_hooks(root)
        code = IsolatedModules(version, root)
        slot = _Slot(version, code, hooks)
        targets = [*hooks.functions, *(t for t in (hooks.state, hooks.code_change) if t)]
        try:
            for module, function in targets:
                func = getattr(code.module(module), function, None)
                if not callable(func):
                    raise ServiceError(
                        f"version {version}: {module}:{function} is not a function",
                        hint="the manifest's [service] names a function its sources do not define",
                    )
        except ServiceError:
            code.drop()
            raise
        except (Exception, SystemExit) as exc:
            code.drop()
            raise ServiceError(
                f"version {version} at {root} does not import: {type(exc).__name__}: {exc}",
                hint="fix the module named in the error; the current version keeps serving",
            ) from exc
        return slot

    def _switch(self, slot: _Slot) -> None:
        """Suspend stateful calls, migrate the state, swap, resume; time the suspension.

        Only the state lock's wait, ``code_change`` and the swap happen while suspended:
        the import was done before, the purge of a drained old version is done after.
        """
        with self._cond:
            self._suspended = True
        started = time.perf_counter()
        locked, migrated, old = False, False, None
        try:
            locked = self._state_lock.acquire(timeout=self.suspend_timeout)
            if not locked:
                raise ServiceError(
                    f"cannot load version {slot.version}: a stateful call ran over {self.suspend_timeout} s",
                    hint="the load waits for the running stateful call to return; retry",
                )
            state = self._migrate(slot)
            migrated = True
        finally:
            with self._cond:  # swap (unless refused) and resume in one step
                if migrated:
                    old, self._current, self._state = self._current, slot, state
                    self._old = old  # purged below if no call runs on it
                    self._loads += 1
                if locked:
                    self._state_lock.release()
                self._suspended = False
                pause = time.perf_counter() - started
                self._pauses = (max(self._pauses[0], pause), pause)
                self._cond.notify_all()
        if old is not None:
            self._purge_if_drained(old)
        if migrated:  # after resuming: sys.modules shows the version that serves
            slot.code.publish(old.code if old is not None else None)

    def _migrate(self, slot: _Slot) -> Any:
        """The state the new version starts with: initial, code_change'd, or carried over."""
        current, hooks = self._current, slot.hooks
        if hooks.state is None:
            return None
        try:
            if current is None or current.hooks.state is None:
                return getattr(slot.code.module(hooks.state[0]), hooks.state[1])()
            if hooks.code_change is not None:
                change = getattr(slot.code.module(hooks.code_change[0]), hooks.code_change[1])
                return change(current.version, self._state)
            return self._state
        except (Exception, SystemExit) as exc:
            which = "code_change" if current is not None and current.hooks.state else "state"
            raise ServiceError(
                f"version {slot.version}: its {which} hook raised {type(exc).__name__}: {exc}",
                hint=f"the load is refused; version {current.version if current else '(none)'} keeps "
                "serving with its state unchanged",
            ) from exc

    # -- inspection ----------------------------------------------------------------------

    def status(self) -> SlotsStatus:
        """Which versions are loaded, their calls in flight, loads and suspensions so far."""
        with self._cond:
            current, old = self._current, self._old
            return SlotsStatus(
                current.version if current else None,
                old.version if old else None,
                old.in_flight if old else 0,
                current.in_flight if current else 0,
                self._loads,
                self._suspended,
                *self._pauses,
            )

    @property
    def version(self) -> str | None:
        """The version that serves (what a worker's ping answers)."""
        with self._cond:
            return self._current.version if self._current else None

    @property
    def state(self) -> Any:
        """The state held for a stateful genome (None for a stateless one)."""
        with self._state_lock:
            return self._state

    def close(self) -> None:
        """Drop every version (the worker is stopping); later calls are refused."""
        with self._load_lock, self._cond:
            for slot in (self._current, self._old):
                if slot is not None:
                    with slot.lock:
                        slot.retired = True
                    slot.code.drop()
            self._current = self._old = None
            self._state = None
