import json
import os
import random
import time

from tiny.core import count_common, summary

rng = random.Random(42)
vocab = ["the", "of", "part", "zebra", "quark", "lumen", "made", "ant"] + [
    f"w{i}" for i in range(50)
]
# Under the instruction counter one short pass is exact; timing wants more work, best of 3.
counted = os.environ.get("TARS_MEASURE") == "instructions"
# the cascade's short count (genome.toml's [fitness] short_scale) runs a share of the input
scale = float(os.environ.get("TARS_BENCH_SCALE", "1"))
scale = scale if 0.0 < scale <= 1.0 else 1.0
words = [rng.choice(vocab) for _ in range(max(1, round(5000 * scale)) if counted else 30000)]
best = float("inf")
for _ in range(1 if counted else 3):
    start = time.process_time()
    count_common(words)
    summary(words)
    best = min(best, time.process_time() - start)
print(json.dumps({"seconds": best}))
