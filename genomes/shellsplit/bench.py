"""Benchmark: what people call shlex for — splitting shell command lines, quoting them back.

Prints one JSON line last: {"seconds": <best of 3>, "lines": <n>, "tokens": <t>}. ``tokens``
is a work count: the tokens produced (POSIX split, punctuation-aware lexing, and the
length of the quoted round trip), which a behaviour-preserving change must not move.
Under TARS's instruction counter (TARS_MEASURE=instructions) fewer lines are run
PASSES times ("seconds" is their sum), so the library's work, not start-up, imports
and input, is most of the count; the work counts are one pass's.
"""

import json
import os
import random
import time

from shellsplit import shlex

#: the measured work's passes under the counter: library work 85 % of the count (docs/genomes.md)
PASSES = 3

WORDS = ["ls", "-la", "grep", "-rn", "'two words'", '"a \\"quoted\\" $HOME"', "key=value",
         "file\\ name.txt", "--option=42", "src/main.py", "|", "&&", ">", "2>&1", "$(pwd)",
         "'it'\\''s'", "# trailing comment", "*.log", "~/notes", "x"]


def command(rng):
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14)))


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
    lines = [command(rng) for _ in range(scaled(1200, scale or 1.0) if counted else 2000)]
    best = 0.0
    tokens = 0
    for run in range(passes(counted, scale)):
        start = time.process_time()
        tokens = 0
        for line in lines:
            words = shlex.split(line, comments=True)
            tokens += len(words)
            tokens += len(shlex.join(words))
        for line in lines[: len(lines) // 4]:
            lexer = shlex.shlex(line, punctuation_chars=True)
            tokens += sum(1 for _ in lexer)
        elapsed = time.process_time() - start
        best = elapsed if run == 0 else (best + elapsed if counted else min(best, elapsed))
    print(json.dumps({"seconds": round(best, 6), "lines": len(lines), "tokens": tokens}))


if __name__ == "__main__":
    main()
