"""Load on the service's HTTP fronts: ``tars load`` and the demo drive traffic with this.

:func:`drive` sends a request mix to one or more fronts for a while, open loop at a rate
(requests are due at ``i / rate`` whether or not earlier ones answered, as live callers
are) with at most ``concurrency`` in flight, or closed loop (``rate`` 0: ``concurrency``
callers back to back).  A request's latency is counted from when it was due, not from
when a free slot let it out, so a front that stalls shows its stall in the percentiles
instead of hiding it by slowing the load down (coordinated omission).

One asyncio loop and aiohttp's client: one process drives a few hundred requests a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from evolution.errors import ConfigError
from evolution.latency import percentile
from runtime.service.client import REQUEST_HEADER

#: How often ``on_progress`` is called, seconds.
TICK = 0.2


class Request(NamedTuple):
    """One request of a mix: which genome's function, with which keyword arguments."""

    genome: str
    function: str
    args: dict[str, Any]


class Progress(NamedTuple):
    """Where a run is, for a progress bar."""

    elapsed: float
    duration: float
    sent: int
    answered: int
    errors: int
    in_flight: int


@dataclass
class LoadReport:
    """What a run saw: counts, latency percentiles (seconds) and who answered."""

    urls: list[str]
    rate: float
    concurrency: int
    seconds: float
    #: requests put on the wire
    sent: int = 0
    #: 200 answers
    ok: int = 0
    #: non-200 answers by status ("400", "503", …) and requests with no answer
    #: ("connect": refused or reset, "timeout")
    errors: dict[str, int] = field(default_factory=dict)
    #: requests due but never sent: the concurrency cap held them until the run ended
    unsent: int = 0
    p50: float = 0.0
    p90: float = 0.0
    p99: float = 0.0
    #: version -> colour -> 200 answers
    answered_by: dict[str, dict[str, int]] = field(default_factory=dict)
    #: url -> requests sent to it
    by_url: dict[str, int] = field(default_factory=dict)
    #: stopped early (Ctrl-C); requests then in flight count as "interrupted"
    interrupted: bool = False

    @property
    def lost(self) -> int:
        """Requests sent that got no answer at all (refused, reset, timed out)."""
        return self.errors.get("connect", 0) + self.errors.get("timeout", 0)

    @property
    def throughput(self) -> float:
        """Answers (of any status) per second over the run."""
        answered = self.sent - self.lost
        return answered / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values (``tars load --json``)."""
        return {**asdict(self), "lost": self.lost, "throughput": self.throughput}


def read_mix(path: Path, genome: str) -> list[Request]:
    """A recorded mix: one JSON object ``{"function": ..., "args": {...}}`` per line."""
    mix: list[Request] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the mix {path}: {exc}", hint="pass an existing file"
        ) from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise ConfigError(
                f"{path}:{number} is not JSON: {exc}",
                hint='each line is {"function": "NAME", "args": {...}}',
            ) from exc
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("function"), str)
            or not isinstance(item.get("args", {}), dict)
        ):
            raise ConfigError(
                f"{path}:{number} is not a request",
                hint='each line is {"function": "NAME", "args": {...}}',
            )
        mix.append(Request(genome, item["function"], item.get("args", {})))
    if not mix:
        raise ConfigError(f"the mix {path} holds no request", hint="record at least one line")
    return mix


def generated_mix(genome: str, description: dict[str, Any]) -> list[Request]:
    """One request per function, with the example arguments the front describes."""
    functions = description.get("functions")
    mix = [
        Request(genome, name, spec["example"])
        for name, spec in sorted((functions or {}).items())
        if isinstance(spec, dict) and isinstance(spec.get("example"), dict)
    ]
    if not mix:
        raise ConfigError(
            f"{genome} describes no function with an example: nothing to generate a mix from",
            hint="add `example = {...}` to the functions of its manifest's [service] section, "
            "or record requests and pass --mix FILE",
        )
    return mix


def drive(
    urls: Sequence[str],
    mix: Sequence[Request],
    rate: float,
    concurrency: int,
    duration: float,
    on_progress: Callable[[Progress], None] | None = None,
    *,
    timeout: float = 10.0,
) -> LoadReport:
    """Send ``mix`` round robin to ``urls`` round robin for ``duration`` seconds."""
    if not urls or not mix:
        raise ConfigError("a load needs at least one front and one request", hint="see --help")
    if concurrency < 1 or duration <= 0 or rate < 0:
        raise ConfigError(
            f"rate {rate}, concurrency {concurrency}, duration {duration} cannot make a load",
            hint="rate ≥ 0 (0: closed loop), concurrency ≥ 1, duration > 0",
        )
    run = _Run(list(urls), list(mix), rate, concurrency, duration, timeout, on_progress)
    return asyncio.run(run.main())


class _Run:
    """One load run's state, on one event loop."""

    def __init__(
        self,
        urls: list[str],
        mix: list[Request],
        rate: float,
        concurrency: int,
        duration: float,
        timeout: float,
        on_progress: Callable[[Progress], None] | None,
    ) -> None:
        self.urls, self.rate, self.concurrency = urls, rate, concurrency
        self.duration, self.timeout, self.on_progress = duration, timeout, on_progress
        #: (path, body) per mix entry, encoded once
        self.bodies = [(f"/v1/{r.genome}/{r.function}", json.dumps(r.args).encode()) for r in mix]
        self.report = LoadReport(urls, rate, concurrency, 0.0)
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        self.by_url: Counter[str] = Counter()
        self.answered_by: dict[str, Counter[str]] = {}
        self.in_flight = 0
        self.started = 0.0
        #: the run's end is cancelling what did not answer within its timeout
        self.ending = False

    async def main(self) -> LoadReport:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=self.concurrency, limit_per_host=0)
        limit = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(connector=connector, timeout=limit) as session:
            self.started = time.perf_counter()
            ticker = asyncio.create_task(self._tick())
            try:
                if self.rate > 0:
                    await self._open_loop(session)
                else:
                    await asyncio.gather(
                        *(self._caller(session, n) for n in range(self.concurrency))
                    )
            except asyncio.CancelledError:  # Ctrl-C: what was seen so far is the report
                self.report.interrupted = True
            finally:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
        return self._finish(time.perf_counter() - self.started)

    async def _open_loop(self, session: Any) -> None:
        slots = asyncio.Semaphore(self.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        index = 0
        try:
            while (due := index / self.rate) < self.duration:
                wait = self.started + due - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                task = asyncio.create_task(self._due(session, slots, index, self.started + due))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                index += 1
            if tasks:  # the last requests get their timeout; what never got a slot is unsent
                await asyncio.wait(set(tasks), timeout=self.timeout)
                self.ending = True
        finally:  # at the end, or on Ctrl-C: nothing is left running
            late = list(tasks)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    async def _due(self, session: Any, slots: asyncio.Semaphore, index: int, due: float) -> None:
        sent = False
        try:
            async with slots:
                sent = True
                await self._one(session, index, due)
        finally:
            if not sent:
                self.report.unsent += 1

    async def _caller(self, session: Any, first: int) -> None:
        index = first
        while time.perf_counter() - self.started < self.duration:
            await self._one(session, index, time.perf_counter())
            index += self.concurrency

    async def _one(self, session: Any, index: int, due: float) -> None:
        """One request; its outcome counted, its latency taken from when it was due."""
        import aiohttp

        url = self.urls[index % len(self.urls)]
        path, body = self.bodies[index % len(self.bodies)]
        self.report.sent += 1
        self.by_url[url] += 1
        self.in_flight += 1
        headers = {"Content-Type": "application/json", REQUEST_HEADER: f"load-{index}"}
        try:
            async with session.post(url + path, data=body, headers=headers) as reply:
                answer = await reply.read()
                status = reply.status
        except TimeoutError:
            self.errors["timeout"] += 1
            return
        except asyncio.CancelledError:  # unanswered at the run's end, or cut by Ctrl-C
            self.errors["timeout" if self.ending else "interrupted"] += 1
            raise
        except aiohttp.ClientError:
            self.errors["connect"] += 1
            return
        finally:
            self.in_flight -= 1
        if status != 200:
            self.errors[str(status)] += 1
            return
        self.latencies.append(time.perf_counter() - due)
        self.report.ok += 1
        try:
            served = json.loads(answer)
            version, colour = str(served.get("version")), str(served.get("colour"))
        except (ValueError, AttributeError):
            version, colour = "?", "?"
        self.answered_by.setdefault(version, Counter())[colour] += 1

    async def _tick(self) -> None:
        while self.on_progress is not None:
            self.on_progress(self._progress())
            await asyncio.sleep(TICK)

    def _progress(self) -> Progress:
        sent = self.report.sent
        errors = sum(self.errors.values())
        elapsed = time.perf_counter() - self.started
        return Progress(elapsed, self.duration, sent, sent - self.in_flight, errors, self.in_flight)

    def _finish(self, seconds: float) -> LoadReport:
        report = self.report
        report.seconds = seconds
        report.errors = dict(sorted(self.errors.items()))
        report.by_url = dict(self.by_url)
        report.answered_by = {v: dict(c) for v, c in sorted(self.answered_by.items())}
        ordered = sorted(self.latencies)
        report.p50, report.p90, report.p99 = (percentile(ordered, q) for q in (0.5, 0.9, 0.99))
        if self.on_progress is not None:
            self.on_progress(self._progress())
        return report
