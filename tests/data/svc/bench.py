import json
import time

from svc.calc import add

start = time.perf_counter()
for i in range(10000):
    add(i, i)
print(json.dumps({"seconds": time.perf_counter() - start}))
