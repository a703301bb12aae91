"""Routing a genome's live calls between its blue and green workers: the ServiceControl.

Per genome a blue pool (the version serving) and, during a rollout, a green pool. Each
call goes to green with probability ``weight``, else to blue; with probability
``mirror`` it also goes to the other colour and the two answers are compared
(:mod:`runtime.service.window`). The choice and the hand-over to a pool happen under
the genome's lock, and promote/abort swap the pools under the same lock, so a call is
always placed on a pool that is still live; a pool leaving service drains (its calls in
flight finish where they started) on a thread of its own, then stops. No request is
lost by a switch. The Deployer drives this only through :class:`ServiceControl`.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

from evolution.errors import BadCallError, ManifestError, ServiceError, UnknownGenomeError
from evolution.manifest import Manifest, Service, parse_manifest
from evolution.service_args import check_args
from evolution.tree import Tree
from runtime.sandbox import Sandbox
from runtime.service.contained import ContainerSpec
from runtime.service.control import Colour, ServiceControl, Window
from runtime.service.window import Mirror, Windows
from runtime.service.worker import Reply
from runtime.service.workers import WorkerPool

__all__ = ["WARM_SECONDS", "GenomeService", "Router"]

#: the longest a green's warm-up (every function's example on every worker) may take
WARM_SECONDS = 5.0


class GenomeService:
    """One genome's pools, weights and figures (guarded by ``lock``)."""

    def __init__(self, genome: str, manifest: Manifest, blue: WorkerPool) -> None:
        self.genome, self.manifest, self.blue = genome, manifest, blue
        self.green: WorkerPool | None = None
        self.green_manifest: Manifest | None = None
        self.weight = 0.0
        self.mirror = 0.0
        self.windows = Windows()
        self.lock = threading.Lock()

    @property
    def service(self) -> Service:
        assert self.manifest.service is not None
        return self.manifest.service


class Router(ServiceControl):
    """Every served genome of one node; implements :class:`ServiceControl` for the Deployer."""

    def __init__(
        self,
        sandbox: Sandbox,
        *,
        call_timeout: float = 30.0,
        ready_wait: float = 5.0,
        drain_timeout: float = 60.0,
        threads: int = 4,
        rng: random.Random | None = None,
        containers: ContainerSpec | None = None,
    ) -> None:
        """``containers``: every pool in a new container of that image (docs/service.md)."""
        self.sandbox, self.containers = sandbox, containers
        self.call_timeout, self.ready_wait = call_timeout, ready_wait
        self.drain_timeout, self.threads = drain_timeout, threads
        self._rng = rng or random.Random()
        self._services: dict[str, GenomeService] = {}
        self._lock = threading.Lock()
        self._draining: list[threading.Thread] = []
        self._retired: list[WorkerPool] = []
        #: the front's event loop, once it runs: pools started later read replies there
        self.loop: asyncio.AbstractEventLoop | None = None

    # -- genomes --

    def _pool(self, genome: str, version: str, tree: Mapping[str, str], manifest: Manifest,
              colour: str, ready_timeout: float) -> WorkerPool:  # fmt: skip
        assert manifest.service is not None
        pool = WorkerPool(
            self.sandbox, genome, version, tree, manifest.service, manifest.limits,
            colour=colour, call_timeout=self.call_timeout, ready_wait=self.ready_wait,
            threads=self.threads, loop=self.loop, containers=self.containers,
        )  # fmt: skip
        pool.start(ready_timeout)
        return pool

    def add(self, genome: str, version: str, tree: Tree, ready_timeout: float = 30.0) -> None:
        """Serve ``version`` of ``genome`` (its blue); ServiceError if it is not ready in time."""
        manifest = _manifest(genome, tree)
        if manifest is None or manifest.service is None:
            raise ServiceError(
                f"{genome} {version[:12]} has no [service] section",
                hint="add [service] with its functions to genome.toml (docs/service.md)",
            )
        pool = self._pool(genome, version, tree, manifest, "blue", ready_timeout)
        with self._lock:
            old = self._services.get(genome)
            self._services[genome] = GenomeService(genome, manifest, pool)
        if old is not None:
            self._retire(old.blue, old.green)

    def remove(self, genome: str) -> None:
        """Stop serving ``genome`` (calls in flight drain first)."""
        with self._lock:
            svc = self._services.pop(genome, None)
        if svc is not None:
            self._retire(svc.blue, svc.green)

    def genomes(self) -> list[str]:
        with self._lock:
            return sorted(self._services)

    def _get(self, genome: str) -> GenomeService:
        svc = self._services.get(genome)
        if svc is None:
            served = ", ".join(sorted(self._services)) or "none"
            raise UnknownGenomeError(
                f"genome {genome!r} is not served here",
                hint=f"served genomes: {served} (GET /v1/health lists them)",
            )
        return svc

    def describe(self, genome: str) -> dict[str, Any]:
        """What ``GET /v1/{genome}`` answers: the version and each function's args and example."""
        svc = self._get(genome)
        functions = {
            name: {"args": dict(spec.args), "example": dict(spec.example)}
            for name, spec in svc.service.functions.items()
        }
        return {"genome": genome, "version": svc.blue.version, "functions": functions}

    def health(self) -> dict[str, Any]:
        """Each genome's colours and green weight (``GET /v1/health``)."""
        with self._lock:
            services = list(self._services.values())
        return {
            s.genome: {
                "blue": s.blue.version,
                "green": s.green.version if s.green is not None else None,
                "weight": s.weight,
            }
            for s in services
        }

    # -- calls --

    def call(self, genome: str, function: str, kwargs: Any, done: Callable[[Reply], None]) -> None:
        """Route one call; ``done`` gets its Reply. Raises for a call the manifest refuses."""
        svc = self._get(genome)
        spec = svc.service.functions.get(function)
        if spec is None:
            names = ", ".join(sorted(svc.service.functions))
            raise BadCallError(
                f"{genome} has no function {function!r}", hint=f"its functions: {names}"
            )
        if not isinstance(kwargs, dict):
            raise BadCallError(
                f"the body of a call to {genome}/{function} must be a JSON object",
                hint='send the keyword arguments as an object, e.g. {"lines": ["..."]}',
            )
        args = check_args(spec, kwargs, function)
        started = time.perf_counter()
        windows = svc.windows
        with svc.lock:
            green = svc.green
            to_green = green is not None and svc.weight > 0 and self._rng.random() < svc.weight
            pool, other = (green, svc.blue) if to_green else (svc.blue, green)
            mirror = None
            if other is not None and svc.mirror > 0 and self._rng.random() < svc.mirror:
                mirror = Mirror(windows, function, args)
            assert pool is not None

            def finished(reply: Reply) -> None:
                windows.served(reply.colour, time.perf_counter() - started, not reply.ok)
                if mirror is not None:
                    mirror.served(reply)
                done(reply)

            pool.submit(spec.module, spec.function, args, finished)
            if mirror is not None and other is not None:
                other.submit(spec.module, spec.function, args, mirror.other)

    # -- ServiceControl --

    def serving(self, genome: str) -> dict[Colour, str]:
        svc = self._get(genome)
        found: dict[Colour, str] = {"blue": svc.blue.version}
        if svc.green is not None:
            found["green"] = svc.green.version
        return found

    def start_green(self, genome: str, version: str, tree: Tree, ready_timeout: float) -> None:
        svc = self._get(genome)
        self.abort(genome)  # at most one green
        manifest = _manifest(genome, tree)
        if manifest is None or manifest.service is None:
            manifest = svc.manifest  # the new version dropped [service]: serve it as before
        pool = self._pool(genome, version, tree, manifest, "green", ready_timeout)
        _warm(pool, manifest, min(ready_timeout, WARM_SECONDS))  # off every lock
        with svc.lock:
            replaced = svc.green  # another start_green finished meanwhile: at most one green
            svc.green, svc.green_manifest, svc.weight = pool, manifest, 0.0
        self._retire(replaced)
        if self._services.get(genome) is not svc:  # the genome was removed or replaced meanwhile
            self._retire(pool)
            raise ServiceError(
                f"{genome}: its service was replaced while green started", hint="start it again"
            )

    def set_weight(self, genome: str, green: float) -> None:
        svc = self._get(genome)
        with svc.lock:
            svc.weight = min(1.0, max(0.0, float(green)))

    def set_mirror(self, genome: str, share: float) -> None:
        svc = self._get(genome)
        with svc.lock:
            svc.mirror = min(1.0, max(0.0, float(share)))

    def window(self, genome: str) -> Window:
        svc = self._get(genome)
        with svc.lock:
            blue, green = svc.blue.version, svc.green.version if svc.green is not None else None
        return svc.windows.close(blue, green)

    def promote(self, genome: str) -> None:
        svc = self._get(genome)
        with svc.lock:
            if svc.green is None:
                raise ServiceError(
                    f"{genome}: no green to promote", hint="start one with start_green first"
                )
            old = svc.blue
            svc.blue, svc.green, svc.weight = svc.green, None, 0.0
            svc.blue.colour = "blue"  # its answers say so from now on
            if svc.green_manifest is not None:
                svc.manifest, svc.green_manifest = svc.green_manifest, None
        self._retire(old, None)

    def abort(self, genome: str) -> None:
        svc = self._get(genome)
        with svc.lock:
            old, svc.green, svc.green_manifest, svc.weight = svc.green, None, None, 0.0
        self._retire(old, None)

    def reload(self, genome: str, version: str, tree: Tree) -> None:
        svc = self._get(genome)
        manifest = _manifest(genome, tree)
        if manifest is None or manifest.service is None:
            raise ServiceError(
                f"{genome}: {version[:12]} has no [service] in its genome.toml to reload to",
                hint="the workers keep the version they had; declare the service's functions",
            )
        svc.blue.reload(version, tree, timeout=self.call_timeout)
        with svc.lock:  # new calls are checked against the new version's functions
            svc.manifest = manifest

    # -- leaving service --

    def _retire(self, *pools: WorkerPool | None) -> None:
        """Drain each pool on a thread of its own, then stop it."""
        for pool in pools:
            if pool is None:
                continue

            def drain(pool: WorkerPool = pool) -> None:
                pool.drain(self.drain_timeout)
                pool.stop()

            thread = threading.Thread(target=drain, name=f"drain-{pool.genome}", daemon=True)
            with self._lock:
                self._draining = [t for t in self._draining if t.is_alive()]
                self._draining.append(thread)
                self._retired = [p for p in self._retired if not p.stopped]
                self._retired.append(pool)
            thread.start()

    def stop(self) -> None:
        """Stop every pool now (workers killed, folders removed); waits for drains to end."""
        with self._lock:
            services, self._services = list(self._services.values()), {}
            retired, self._retired = self._retired, []
            draining, self._draining = self._draining, []
        for svc in services:
            for pool in (svc.blue, svc.green):
                if pool is not None:
                    pool.stop()
        for pool in retired:
            pool.stop()
        for thread in draining:
            thread.join(10)


def _warm(pool: WorkerPool, manifest: Manifest, timeout: float) -> None:
    """Every function's example, once per worker, before green takes any weight.

    Readiness runs only the first function's example; a worker's first call of each
    other function (its module's import, the interpreter's first pass over it) would
    otherwise be paid by a live caller right after the switch. Answers are not judged
    here (an example may raise on purpose): the rollout's analysis judges green.
    """
    assert manifest.service is not None
    waiting: list[Future[Reply]] = [
        future
        for spec in manifest.service.functions.values()
        for future in pool.on_each(spec.module, spec.function, dict(spec.example))
    ]
    deadline = time.monotonic() + timeout
    for future in waiting:
        try:
            future.result(timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            return  # a slow example: green is ready all the same, the rest warm on their own


def _manifest(genome: str, tree: Tree) -> Manifest | None:
    text = tree.get("genome.toml")
    if text is None:
        return None
    try:
        return parse_manifest(text, f"{genome}/genome.toml")
    except ManifestError:
        return None
