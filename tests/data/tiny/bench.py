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
words = [rng.choice(vocab) for _ in range(5000 if counted else 30000)]
best = float("inf")
for _ in range(1 if counted else 3):
    start = time.process_time()
    count_common(words)
    summary(words)
    best = min(best, time.process_time() - start)
print(json.dumps({"seconds": best}))
