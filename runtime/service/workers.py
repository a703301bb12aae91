"""A pool of workers for one version of one genome (one colour of its service).

N jailed workers (:mod:`runtime.service.jailed`), each long-lived, fed by least-busy
choice (ties in turn). A worker is *ready* once it answered a ping and the first
service function's example call; a pool is ready when all are. A worker that dies is
restarted (with a growing pause if it keeps dying), and the calls it held are retried
once on another worker: the service's functions are treated as pure (docs/service.md,
"Pure"), so running one twice is harmless. A call that outlives ``call_timeout`` ends
as ``timeout`` and its worker is killed (a Python thread cannot be stopped otherwise);
the worker's other calls are retried. When no worker is ready, calls wait in a backlog
for ``ready_wait`` seconds, then end as ``unavailable`` (the front's 503).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from evolution.errors import ServiceError
from evolution.manifest import Limits, Service
from runtime.sandbox import Sandbox
from runtime.service.contained import ContainerSpec, ServiceContainer
from runtime.service.jailed import check_version, inside_path, limits_for, spawn, write_tree
from runtime.service.worker import Call, Child, Reply, Worker

__all__ = ["MAX_HELD", "WORKER_FILES", "WorkerPool"]

_HERE = Path(__file__).parent
#: what of this package a worker needs inside its jail (copied, never the project folder)
WORKER_FILES = ("worker_main.py", "frames.py", "code.py", "slots.py", "isolated.py")
_RESTART_PAUSE = (0.0, 0.1, 0.3, 1.0, 3.0)
#: calls a pool holds per worker (running or waiting) before it answers "overloaded" (503)
MAX_HELD = 1024


class WorkerPool:
    """The workers of one colour: start, route, retry, restart, drain, stop."""

    def __init__(
        self,
        sandbox: Sandbox,
        genome: str,
        version: str,
        tree: Mapping[str, str],
        service: Service,
        limits: Limits,
        *,
        colour: str,
        call_timeout: float = 30.0,
        ready_wait: float = 5.0,
        threads: int = 4,
        loop: asyncio.AbstractEventLoop | None = None,
        containers: ContainerSpec | None = None,
    ) -> None:
        """``containers``: run the workers in a new container of that image
        (:mod:`runtime.service.contained`), not as jailed children of this node."""
        self.sandbox, self.genome, self.version, self.colour = sandbox, genome, version, colour
        #: the front's event loop: workers' replies are read there (no thread hand-over)
        self.loop = loop
        self.service, self.call_timeout, self.ready_wait = service, call_timeout, ready_wait
        self.threads = threads
        check_version(version)
        # a `ws-<pid>-` folder: the sandbox's reaper removes it if the node is killed
        self.folder = Path(tempfile.mkdtemp(prefix=f"ws-{os.getpid()}-svc-", dir=sandbox.root))
        self.folder.chmod(0o755)
        self._limits = limits_for(
            limits.memory_mb, limits.processes + threads + 4, limits.file_mb, limits.disk_mb
        )
        workers = max(1, service.workers)
        self.box = (
            ServiceContainer(
                containers,
                self.folder,
                genome=genome,
                version=version,
                colour=colour,
                memory_mb=limits.memory_mb * workers + 64,
                pids=(limits.processes + threads + 4) * workers + 8,
            )  # fmt: skip
            if containers is not None
            else None
        )
        self._lock = threading.Condition()
        self.workers: list[Worker] = []
        self._backlog: list[Call] = []
        self._turn = itertools.count()
        self._deaths = 0
        self._stopped = False
        self.restarts = 0
        self.last_failure = ""
        try:
            own = {"runtime/__init__.py": "", "runtime/service/__init__.py": ""}
            for rel in WORKER_FILES:
                if (_HERE / rel).is_file():
                    own[f"runtime/service/{rel}"] = (_HERE / rel).read_text()
            write_tree(self.folder / "_worker", own)
            write_tree(self.folder / "v" / version, tree)
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise
        self._monitor = threading.Thread(
            target=self._watch, name=f"pool-{genome}-{colour}", daemon=True
        )

    # -- starting --

    def start(self, ready_timeout: float) -> None:
        """Start every worker and wait until each is ready; ServiceError (pool stopped) if not."""
        deadline = time.monotonic() + ready_timeout
        self._monitor.start()
        try:
            if self.box is not None:
                self.box.start()
            else:
                self.sandbox.mechanisms()  # the jail's refuse-or-flag rule: a refusal raises here
            for index in range(self.service.workers):
                self._start_worker(index)
            with self._lock:
                while (
                    not all(w.ready for w in self.workers)
                    or len(self.workers) < self.service.workers
                ):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise ServiceError(
                            f"{self.genome} {self.version[:12]} ({self.colour}): workers not ready "
                            f"within {ready_timeout:g} s ({self.last_failure or 'no answer'})",
                            hint="check the version's service functions and their examples "
                            "(genome.toml [service]); the version stays off live traffic",
                        )
                    self._lock.wait(min(left, 0.1))
        except BaseException:
            self.stop()
            raise

    def _inside(self) -> Path:
        """Where the pool's folder appears to a worker (a container mounts it in place)."""
        return self.folder if self.box is not None else inside_path(self.sandbox, self.folder)

    def _argv(self, version: str) -> list[str]:
        inside = self._inside()
        loader = "slots" if self.service.reloadable and (_HERE / "slots.py").is_file() else "plain"
        return [
            "python", "-I", str(inside / "_worker/runtime/service/worker_main.py"),
            "--version", version, "--root", str(inside / "v" / version),
            "--loader", loader, "--threads", str(self.threads),
        ]  # fmt: skip

    def _start_worker(self, index: int) -> None:
        """Spawn worker ``index`` (replacing a dead one) and probe it; off the caller's thread."""
        name = f"{self.genome}-{self.colour}-{index}"
        try:
            jailed: Child
            if self.box is not None:
                jailed = self.box.spawn(self._argv(self.version))
            else:
                jailed = spawn(self.sandbox, self.folder, self._argv(self.version), self._limits)
        except Exception as exc:  # noqa: BLE001 (a refusal or a spawn failure: not ready)
            self._failed(f"cannot start a worker: {exc}")
            with self._lock:
                pause = self._pause()
            self._later(index, pause)  # an engine or a machine busy for a while: try again
            return
        worker = Worker(name, jailed, self._reply, self._exited, self.loop)
        with self._lock:
            if self._stopped:
                worker.kill()
                return
            if index < len(self.workers):
                self.workers[index] = worker
            else:
                self.workers.append(worker)
        self._probe(worker)

    def _probe(self, worker: Worker) -> None:
        """Ping, then the first function's example call: ready only if both answer."""
        name, spec = next(iter(self.service.functions.items()))

        def example(reply: Reply) -> None:
            if reply.ok:
                with self._lock:
                    worker.ready = True
                    self._deaths = 0
                    self._flush_backlog()
                    self._lock.notify_all()
            else:
                worker.failure = f"the example call of {name!r} failed: {reply.error}"
                self._failed(worker.failure)
                worker.kill()

        def pinged(answer: dict[str, Any]) -> None:
            if not answer.get("ok"):
                self._failed(f"no answer to ping: {answer.get('error', '?')}")
                return
            call = Call(spec.module, spec.function, dict(spec.example), example,
                        time.monotonic() + self.call_timeout, attempts=2)  # fmt: skip
            if not worker.send(call):
                self._failed("the worker died before its example call")

        worker.control({"op": "ping"}, pinged)

    def _failed(self, why: str) -> None:
        with self._lock:
            self.last_failure = why
            self._lock.notify_all()

    # -- calls --

    def submit(
        self, module: str, function: str, kwargs: dict[str, Any], done: Callable[[Reply], None]
    ) -> None:
        """Run a call; ``done`` gets its Reply once (from a worker's thread or the monitor)."""
        call = Call(module, function, kwargs, done, time.monotonic() + self.call_timeout)
        with self._lock:
            if self._stopped:
                self._end(call, "unavailable", f"{self.genome} {self.colour} is stopped")
                return
            held = len(self._backlog) + sum(w.busy for w in self.workers)
            if held >= MAX_HELD * max(1, len(self.workers)):  # memory stays bounded
                self._end(call, "unavailable", f"{self.genome} {self.colour} is overloaded "
                          f"({held} calls waiting or running)")  # fmt: skip
                return
            self._place(call)

    def call(self, module: str, function: str, kwargs: dict[str, Any]) -> Future[Reply]:
        """:meth:`submit` as a future (tests, probes)."""
        future: Future[Reply] = Future()
        self.submit(module, function, kwargs, future.set_result)
        return future

    def on_each(self, module: str, function: str, kwargs: dict[str, Any]) -> list[Future[Reply]]:
        """The call once on every ready worker (a green's warm-up: each worker pays its own
        first pass over a function, never a live caller); a worker that dies meanwhile
        answers as for any call."""
        futures: list[Future[Reply]] = []
        with self._lock:
            for worker in [w for w in self.workers if w.ready and w.alive]:
                future: Future[Reply] = Future()
                call = Call(module, function, dict(kwargs), future.set_result,
                            time.monotonic() + self.call_timeout, attempts=1)  # fmt: skip
                if worker.send(call):
                    futures.append(future)
        return futures

    def _place(self, call: Call) -> None:
        """Under the lock: the least busy ready worker, else the backlog."""
        ready = [w for w in self.workers if w.ready and w.alive]
        while ready:
            turn = next(self._turn)
            worker = min(ready, key=lambda w: (w.busy, (ready.index(w) - turn) % len(ready)))
            if worker.send(call):
                return
            ready.remove(worker)
        call.deadline = min(call.deadline, time.monotonic() + self.ready_wait)
        self._backlog.append(call)

    def _flush_backlog(self) -> None:
        waiting, self._backlog = self._backlog, []
        for call in waiting:
            self._place(call)

    def _reply(self, worker: Worker, call: Call, message: dict[str, Any]) -> None:
        if message.get("ok"):
            reply = Reply(True, message.get("result"), "", "", self.version, self.colour)
        else:
            kind = str(message.get("kind") or "exception")
            reply = Reply(
                False, None, str(message.get("error", "")), kind, self.version, self.colour
            )
        self._finish(call, reply)

    def _finish(self, call: Call, reply: Reply) -> None:
        with self._lock:
            if call.finished:
                return
            call.finished = True
            if not self._backlog and not any(w.busy for w in self.workers):
                self._lock.notify_all()  # a drain may be waiting
        call.done(reply)

    def _end(self, call: Call, kind: str, error: str) -> None:
        call.finished = True
        call.done(Reply(False, None, error, kind, self.version, self.colour))

    def _exited(self, worker: Worker, calls: list[Call], why: str) -> None:
        """A worker died: retry its calls once elsewhere, restart it (unless stopping)."""
        retry: list[Call] = []
        failed: list[Call] = []
        for call in calls:
            call.attempts += 1
            (retry if call.attempts < 2 and not call.finished else failed).append(call)
        if self._stopped:
            for call in calls:
                self._finish(call, Reply(False, None, f"{self.genome} {self.colour} stopped",
                                         "unavailable", self.version, self.colour))  # fmt: skip
            return
        for call in failed:
            self._finish(call, Reply(False, None, f"the worker died running this call: {why}",
                                     "crash", self.version, self.colour))  # fmt: skip
        with self._lock:
            self.last_failure = worker.failure or f"a worker died: {why}"
            for call in retry:
                self._place(call)
            if self._stopped or worker not in self.workers:
                self._lock.notify_all()
                return
            index = self.workers.index(worker)
            pause = self._pause()
            self.restarts += 1
            self._lock.notify_all()
        self._later(index, pause)

    def _pause(self) -> float:
        """Under the lock: how long the next restart waits (longer each death in a row)."""
        pause = _RESTART_PAUSE[min(self._deaths, len(_RESTART_PAUSE) - 1)]
        self._deaths += 1
        return pause

    def _later(self, index: int, pause: float) -> None:
        """Start worker ``index`` again after ``pause`` seconds, on a thread of its own."""

        def restart() -> None:
            time.sleep(pause)
            if not self._stopped:
                self._start_worker(index)

        name = f"restart-{self.genome}-{self.colour}-{index}"
        threading.Thread(target=restart, name=name, daemon=True).start()

    def _watch(self) -> None:
        """Every 50 ms: end calls past their deadline; kill a worker stuck in one."""
        while True:
            time.sleep(0.05)
            now = time.monotonic()
            stuck: list[Worker] = []
            late: list[tuple[Call, str, str]] = []
            with self._lock:
                if self._stopped:
                    return
                for call in [c for c in self._backlog if c.deadline < now]:
                    self._backlog.remove(call)
                    late.append((call, "unavailable", f"no {self.colour} worker of {self.genome} "
                                 f"ready within {self.ready_wait:g} s ({self.last_failure or 'starting'})"))  # fmt: skip
                for worker in self.workers:
                    for ident, call in list(worker.inflight.items()):
                        if call.deadline < now:
                            worker.inflight.pop(ident, None)
                            late.append(
                                (call, "timeout", f"no answer within {self.call_timeout:g} s")
                            )
                            stuck.append(worker)
            for call, kind, error in late:
                self._finish(call, Reply(False, None, error, kind, self.version, self.colour))
            for worker in dict.fromkeys(stuck):
                worker.kill()

    # -- versions, draining, stopping --

    def reload(self, version: str, tree: Mapping[str, str], timeout: float) -> None:
        """Every worker loads ``version`` in place; ServiceError if one does not in time."""
        check_version(version)
        write_tree(self.folder / "v" / version, tree)
        root = str(self._inside() / "v" / version)
        answers: list[dict[str, Any]] = []
        done = threading.Event()
        with self._lock:
            workers = [w for w in self.workers if w.alive]
        for worker in workers:

            def answer(message: dict[str, Any]) -> None:
                answers.append(message)
                if len(answers) == len(workers):
                    done.set()

            worker.control({"op": "reload", "version": version, "root": root}, answer)
        if workers and not done.wait(timeout):
            raise ServiceError(f"{self.genome}: reload to {version[:12]} not answered within {timeout:g} s",
                               hint="the workers keep the version they had")  # fmt: skip
        bad = [a for a in answers if not a.get("ok")]
        if bad:
            raise ServiceError(f"{self.genome}: reload to {version[:12]} failed: {bad[0].get('error')}",
                               hint="check the version's code; restarted workers load it afresh")  # fmt: skip
        self.version = version  # restarted workers start on it too

    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def inflight(self) -> int:
        with self._lock:
            return len(self._backlog) + sum(w.busy for w in self.workers)

    def drain(self, timeout: float) -> bool:
        """Wait until no call is in flight here (new ones go elsewhere); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._backlog or any(w.busy for w in self.workers):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.1))
        return True

    def stop(self) -> None:
        """Kill every worker, end what still waits, remove the folder."""
        with self._lock:
            self._stopped = True
            workers, self.workers = list(self.workers), []
            waiting, self._backlog = self._backlog, []
            self._lock.notify_all()
        for worker in workers:
            worker.kill()
        for worker in workers:
            worker.join(5)
            waiting.extend(worker.inflight.values())  # a worker whose end was never read
            worker.inflight.clear()
        for call in waiting:
            self._end(call, "unavailable", f"{self.genome} {self.colour} stopped")
        if self._monitor.is_alive():
            self._monitor.join(1)
        if self.box is not None:
            self.box.remove()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.folder)
