"""An asyncio server on an event loop of its own thread: the node's HTTP front and the
dashboard both serve so, beside the node's other threads."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["serve_on_thread"]


def serve_on_thread(
    listen: Callable[[], Coroutine[Any, Any, None]], name: str
) -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    """Run ``listen()`` on a new loop on a daemon thread, then keep that loop running;
    return once it listens. Its failure (a taken port) is raised here, the thread ended."""
    ready = threading.Event()
    failure: list[BaseException] = []
    loop = asyncio.new_event_loop()

    def run() -> None:
        try:
            loop.run_until_complete(listen())
        except BaseException as exc:  # noqa: BLE001 (handed to the starting thread)
            failure.append(exc)
            ready.set()
            loop.close()
            return
        ready.set()
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    ready.wait()
    if failure:
        thread.join()
        raise failure[0]
    return loop, thread
