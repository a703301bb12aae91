"""A service worker: a long-lived child, in the jail, that runs a genome's functions.

Started by :mod:`runtime.service.workers` as ``python -I worker_main.py --version V
--root R [--loader plain|slots] [--threads N] [--connect SOCKET]``. It loads version V
from folder R (read-only), then reads frames (:mod:`runtime.service.frames`) from its
stdin and writes replies to its stdout; with ``--connect`` (a worker in a service
container, :mod:`runtime.service.contained`, started by ``docker exec`` with no pipe to
the node) it first connects three times to the node's Unix socket at SOCKET (frames in,
frames out, stderr) and uses those instead, and it exits as soon as the node closes the
frames it sends (nobody is left to read a reply):

* ``{"op": "call", "id", "module", "function", "kwargs"}`` → ``{"id", "ok": true,
  "result"}`` or ``{"id", "ok": false, "error": "ValueError: ...", "kind": "exception"}``
  (``kind`` ``"result"`` when the answer cannot be encoded);
* ``{"op": "reload", "id", "version", "root"}`` → ``{"id", "ok", "version"}``;
* ``{"op": "ping", "id"}`` → ``{"id", "ok": true, "version"}``.

A small pool of threads takes frames in turn and runs each call on the thread that
read it, so calls run concurrently and a reload or ping is answered while calls run. The genome's
``print`` must not corrupt the frames: fd 1 is pointed at stderr and fd 0 at
/dev/null, the frames use private duplicates. Only the standard library, msgpack and
this folder's modules are imported here: the worker's files are copied into the jail.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections import deque
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: the copied package's root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from runtime.service.frames import FrameReader, encode  # noqa: E402

#: the largest frame the node may send (its request bodies are bounded far below this)
IN_LIMIT = 256 << 20


class _Out:
    """The reply pipe; one writer at a time (replies come from many threads)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        try:
            data = encode(message)
        except Exception as exc:  # noqa: BLE001 (the genome's result may be anything)
            data = encode(
                {"id": message.get("id"), "ok": False, "kind": "result",
                 "error": f"cannot encode the result: {type(exc).__name__}: {exc}"}
            )  # fmt: skip
        view = memoryview(data)
        with self.lock:
            while view:
                written = os.write(self.fd, view)
                view = view[written:]


def _loader(kind: str) -> Any:
    if kind == "slots":
        from runtime.service.slots import VersionSlots  # type: ignore[import-not-found]

        return VersionSlots()
    from runtime.service.code import LoadedCode

    return LoadedCode()


def _call(code: Any, out: _Out, message: dict[str, Any]) -> None:
    ident = message.get("id")
    try:
        result = code.call(message["module"], message["function"], message.get("kwargs") or {})
    except BaseException as exc:  # noqa: BLE001 (SystemExit from the genome is its error too)
        out.send({"id": ident, "ok": False, "kind": "exception",
                  "error": f"{type(exc).__name__}: {exc}"})  # fmt: skip
        return
    out.send({"id": ident, "ok": True, "result": result})


def _reload(code: Any, out: _Out, message: dict[str, Any]) -> None:
    ident = message.get("id")
    try:
        code.load(str(message["version"]), Path(str(message["root"])))
    except Exception as exc:  # noqa: BLE001
        out.send({"id": ident, "ok": False, "kind": "exception",
                  "error": f"{type(exc).__name__}: {exc}"})  # fmt: skip
        return
    out.send({"id": ident, "ok": True, "version": message["version"]})


class _Inbox:
    """Frames in arrival order; one thread at a time reads the pipe for more."""

    def __init__(self, reader: FrameReader) -> None:
        self.reader = reader
        self.lock = threading.Lock()
        self.pending: deque[dict[str, Any]] = deque()
        self.closed = False
        self.ended = threading.Event()

    def next(self) -> dict[str, Any] | None:
        with self.lock:
            while not self.pending:
                if self.closed:
                    return None
                frames = self.reader.frames()
                if frames is None:
                    self.closed = True
                    self.ended.set()
                    return None
                self.pending.extend(frames)
            return self.pending.popleft()


def _handle(code: Any, out: _Out, message: dict[str, Any]) -> None:
    op = message.get("op")
    if op == "call":
        _call(code, out, message)
    elif op == "ping":
        out.send({"id": message.get("id"), "ok": True, "version": getattr(code, "version", None)})
    elif op == "reload":  # on a thread of its own: a soft purge may wait for calls to end
        threading.Thread(target=_reload, args=(code, out, message), daemon=True).start()
    else:
        out.send({"id": message.get("id"), "ok": False, "kind": "protocol",
                  "error": f"unknown op {op!r}"})  # fmt: skip


def serve(code: Any, reader: FrameReader, out: _Out, threads: int, *, linger: bool = True) -> None:
    """Answer frames until the node closes the pipe (``linger``: and the calls running end).

    Leader and followers: each of ``threads`` threads takes the next frame (one of them
    reads the pipe while the others run calls) and handles it itself, so a call costs no
    hand-over between threads, and calls run concurrently up to ``threads``.
    """

    def loop() -> None:
        while (message := inbox.next()) is not None:
            _handle(code, out, message)

    inbox = _Inbox(reader)
    workers = [threading.Thread(target=loop, name=f"call-{n}", daemon=True) for n in range(threads)]
    for thread in workers:
        thread.start()
    if not linger:
        inbox.ended.wait()
        return
    for thread in workers:
        thread.join()


def _connect(path: str) -> tuple[int, int]:
    """Three connections to the node (in the order it accepts them): frames in, frames
    out, stderr. fd 2 becomes the third, so a failed load is still heard by the node."""
    import socket

    ends = []
    for _ in range(3):
        end = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        end.connect(path)
        ends.append(end.detach())
    os.dup2(ends[2], 2)
    os.close(ends[2])
    return ends[0], ends[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="worker_main")
    parser.add_argument("--version", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--loader", choices=("plain", "slots"), default="plain")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--connect", default="")
    args = parser.parse_args(argv)
    if args.connect:
        frames_in, frames_out = _connect(args.connect)
    else:
        frames_in, frames_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(2, 1)  # the genome's print() goes to stderr, never into a frame
    os.close(null)
    code = _loader(args.loader)
    try:
        code.load(args.version, Path(args.root))
    except Exception as exc:  # noqa: BLE001
        print(f"worker: cannot load version {args.version}: {type(exc).__name__}: {exc}",
              file=sys.stderr)  # fmt: skip
        return 3
    reader = FrameReader(frames_in, IN_LIMIT)
    serve(code, reader, _Out(frames_out), max(1, args.threads), linger=not args.connect)
    if args.connect:  # a call still running would keep the process alive for no one
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
