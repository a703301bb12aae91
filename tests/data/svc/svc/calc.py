"""Small pure functions the service's tests call through HTTP and in-process."""

import time


def add(a, b):
    return a + b


def words(text, upper=False):
    found = text.split()
    return {"count": len(found), "words": [w.upper() for w in found] if upper else found}


def fail(message):
    raise ValueError(message)


def slow(seconds):
    time.sleep(seconds)
    return seconds


def peek(path):
    """Read any file: the tests use it to attack the jail from a worker."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.read(200)


def grow(mb):
    """Hold ``mb`` MiB at once: the worker's memory limit (the manifest's) refuses too much."""
    return len(bytearray(mb << 20))
