"""Bump a thousand keys through the store, in-process."""

import json
import time

from counter import store

started = time.perf_counter()
state = store.initial()
for i in range(20000):
    _, state = store.bump(state, f"k{i % 1000}")
print(json.dumps({"seconds": time.perf_counter() - started, "items": 20000}))
