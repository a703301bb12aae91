"""Benchmark: what people call difflib for — diffs of edited files, close matches, ratios.

Prints one JSON line last: {"seconds": <best of 3>, "lines": <diff lines>, "matches": <m>}.
``lines`` and ``matches`` are work counts a behaviour-preserving change must not move.
Under TARS's instruction counter (TARS_MEASURE=instructions) a smaller input is run
PASSES times ("seconds" is their sum), so the library's work, not start-up, imports
and input, is most of the count; the work counts are one pass's.
"""

import json
import os
import random
import time

from seqdiff import difflib

#: the measured work's passes under the counter: library work 85 % of the count (docs/genomes.md)
PASSES = 4

WORDS = ["def", "return", "self", "value", "items", "count", "for", "in", "if", "else",
         "total", "name", "index", "result", "append", "len", "range", "None", "True", "key"]


def source(rng, n):
    out = []
    for i in range(n):
        indent = "    " * rng.randint(0, 3)
        out.append(indent + " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 9))) + "\n")
    return out


def edited(rng, lines):
    out = list(lines)
    for _ in range(max(1, len(out) // 12)):
        i = rng.randrange(len(out))
        op = rng.random()
        if op < 0.4:
            out[i] = out[i].replace(rng.choice(WORDS), rng.choice(WORDS), 1)
        elif op < 0.7:
            out.insert(i, "    " + " ".join(rng.choice(WORDS) for _ in range(4)) + "\n")
        else:
            del out[i]
    return out


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
    size = scale or 1.0  # scale 0: the whole input, no pass over it
    files = [source(rng, 200 if counted else 300) for _ in range(scaled(6, size) if counted else 8)]
    pairs = [(a, edited(rng, a)) for a in files]
    vocab = sorted({w + str(rng.randint(0, 50)) for w in WORDS for _ in range(20)})
    queries = [rng.choice(vocab)[:-1] + "x" for _ in range(scaled(40, size) if counted else 60)]
    best = 0.0
    lines = matches = 0
    for run in range(passes(counted, scale)):
        start = time.process_time()
        lines = 0
        for a, b in pairs:
            lines += sum(1 for _ in difflib.unified_diff(a, b, "a.py", "b.py"))
            lines += sum(1 for _ in difflib.ndiff(a[:40], b[:40]))
        matches = sum(len(difflib.get_close_matches(q, vocab, n=3, cutoff=0.6)) for q in queries)
        elapsed = time.process_time() - start
        best = elapsed if run == 0 else (best + elapsed if counted else min(best, elapsed))
    print(json.dumps({"seconds": round(best, 6), "lines": lines, "matches": matches}))


if __name__ == "__main__":
    main()
