"""Benchmark: parse a deterministic corpus of TOML documents (config files as people write them).

Prints one JSON line last: {"seconds": <best of 3>, "documents": <n>, "keys": <k>}. ``keys``
is a work count: the number of leaf values parsed, which a behaviour-preserving change
must not move. Under TARS's instruction counter (TARS_MEASURE=instructions) fewer
documents are parsed PASSES times ("seconds" is their sum), so the library's work, not
start-up, imports and input, is most of the count; the work counts are one pass's.
"""

import json
import os
import random
import time

from tomlparse import loads

#: the measured work's passes under the counter: library work 85 % of the count (docs/genomes.md)
PASSES = 8

WORDS = ["alpha", "beta", "gamma", "delta", "server", "client", "cache", "pool", "timeout",
         "retries", "path", "name", "owner", "region", "replica", "shard", "token", "level"]


def word(rng):
    return rng.choice(WORDS) + str(rng.randint(0, 99))


def value(rng, depth=0):
    kind = rng.randint(0, 11 if depth < 2 else 8)
    if kind == 0:
        return str(rng.randint(-10**6, 10**6))
    if kind == 1:
        return "%.6g" % rng.uniform(-1e4, 1e4)
    if kind == 2:
        return rng.choice(["true", "false"])
    if kind == 3:
        return '"%s \\"quoted\\" \\u00e9 %s\\n"' % (word(rng), word(rng))
    if kind == 4:
        return "'C:\\\\%s\\%s'" % (word(rng), word(rng))
    if kind == 5:
        return "1979-05-27T07:%02d:%02d-08:00" % (rng.randint(0, 59), rng.randint(0, 59))
    if kind == 6:
        return "2024-%02d-%02d" % (rng.randint(1, 12), rng.randint(1, 28))
    if kind == 7:
        return '"""\n%s\n  %s \\\n  %s"""' % (word(rng), word(rng), word(rng))
    if kind == 8:
        return "0x%X" % rng.randint(0, 1 << 20)
    if kind == 9:
        return "[%s]" % ", ".join(value(rng, depth + 1) for _ in range(rng.randint(0, 5)))
    if kind == 10:
        items = ", ".join("%s = %s" % (word(rng), value(rng, depth + 1)) for _ in range(rng.randint(1, 3)))
        return "{ %s }" % items
    return "[\n  %s,\n]" % ",\n  ".join(str(rng.randint(0, 999)) for _ in range(rng.randint(1, 6)))


def document(rng):
    lines = ["# generated configuration", 'title = "%s"' % word(rng)]
    for t in range(rng.randint(3, 8)):
        if rng.random() < 0.3:
            lines.append("\n[[%s.%s]]" % (word(rng), "items"))
        else:
            lines.append("\n[%s.%s-%d]" % (word(rng), word(rng), t))
        used = set()
        for _ in range(rng.randint(2, 9)):
            key = word(rng)
            if key in used:
                continue
            used.add(key)
            if rng.random() < 0.15:
                key = '"%s key"' % key
            lines.append("%s = %s  # note" % (key, value(rng)) if rng.random() < 0.2
                         else "%s = %s" % (key, value(rng)))
    return "\n".join(lines) + "\n"


def leaves(obj):
    if isinstance(obj, dict):
        return sum(leaves(v) for v in obj.values())
    if isinstance(obj, list):
        return sum(leaves(v) for v in obj)
    return 1


def short_scale():
    """The share of the counted input to run: TARS's short count sets TARS_BENCH_SCALE
    (genome.toml's [fitness] short_scale); 0 runs the fixed part alone (start-up, imports,
    input, no measured work: how docs/genomes.md splits the count); anything else runs
    the whole input."""
    try:
        value = float(os.environ.get("TARS_BENCH_SCALE", "1"))
    except ValueError:
        return 1.0
    return value if 0.0 <= value <= 1.0 else 1.0


def passes(counted, scale):
    """How many times the measured work runs: best-of-3 when timed; under the counter
    PASSES times, so the library's work is most of the count and not the interpreter's
    start-up, the imports and the input, counted once (docs/genomes.md, "Benchmarks that
    measure the work"); none at scale 0."""
    if not counted:
        return 3
    return PASSES if scale > 0 else 0


def scaled(n, scale):
    """``n`` items of input at ``scale``, at least one."""
    return max(1, round(n * scale))


def main():
    counted = os.environ.get("TARS_MEASURE") == "instructions"
    rng = random.Random(1234)
    scale = short_scale() if counted else 1.0
    docs = [document(rng) for _ in range(scaled(60, scale or 1.0) if counted else 300)]
    best = 0.0
    keys = 0
    for run in range(passes(counted, scale)):
        start = time.process_time()
        parsed = [loads(d) for d in docs]
        elapsed = time.process_time() - start
        best = elapsed if run == 0 else (best + elapsed if counted else min(best, elapsed))
        keys = sum(leaves(p) for p in parsed)
    print(json.dumps({"seconds": round(best, 6), "documents": len(docs), "keys": keys}))


if __name__ == "__main__":
    main()
