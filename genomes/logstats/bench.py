"""Benchmark: a deterministic synthetic log through the whole pipeline.

Prints one JSON line last: {"seconds": <best of 3>, "lines": <n>}. The time is CPU time
(`time.process_time`): on a shared VM, wall time also counts the neighbours (steal), which
made A/B intervals twice as wide.

Under TARS's instruction counter (TARS_MEASURE=instructions) the count is exact, so one
pass over a smaller log says as much as best-of-3 and keeps the run under valgrind short.

The input is the file a campaign provides when there is one (``input.jsonl`` in this
folder, or the file TARS_BENCH_INPUT names, inside it: docs/language.md, "Campaigns"),
else the generated log; either way the same bytes give the same count.
"""

import json
import os
import random
import time

from logstats import render_report, summarise

N_LINES = 6000
#: the input a campaign writes into the genome (a script's `input = SOURCE`), and the
#: variable that names another file of the genome instead
DEFAULT_INPUT = "input.jsonl"
INPUT_ENV = "TARS_BENCH_INPUT"
COMBINED = '%s - - [10/Oct/2023:13:55:36 +0000] "%s %s HTTP/1.1" %d - "-" "%s" %.3f'

MONTH_NAMES = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

ROUTES = [
    "/", "/login", "/logout", "/api/users/{id}", "/api/users/{id}/orders", "/api/orders/{id}",
    "/api/orders/{id}/items/{id}", "/api/search", "/api/products/{id}", "/api/cart",
    "/static/js/app.{hash}.js", "/static/css/site.{hash}.css", "/img/logo.png", "/favicon.ico",
    "/api/v2/Reports/{uuid}", "/docs/getting%20started", "/api/payments/{id}/refund",
    "/admin/../api/health", "/api/Inventory/{id}", "/robots.txt",
]
QUERIES = ["", "", "", "?page=2", "?page=3", "?q=shoes", "?sort=asc", "?ref=mail"]
AGENTS = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/120.0 Mobile Safari/537.36",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "curl/8.4.0",
    "python-requests/2.31.0",
    "Go-http-client/1.1",
    "-",
]
WORDS = [
    "payment", "order", "user", "session", "cache", "database", "connection", "request",
    "upstream", "worker", "queue", "job", "token", "invoice", "inventory", "shipment",
    "timeout", "failed", "refused", "retry", "deadlock", "slow", "query", "lock", "pool",
    "the", "a", "for", "with", "after", "to", "of", "is", "was", "on", "in", "from", "by",
    "and", "not", "still", "again", "because", "then", "while", "no", "this", "that",
]
SERVICES = ["billing", "auth", "catalog", "orders", "search"]
LEVELS = ["info", "info", "info", "debug", "warn", "warning", "error", "ERROR"]


def make_path(rng):
    route = rng.choice(ROUTES)
    while "{id}" in route:
        route = route.replace("{id}", str(rng.randint(1, 12)), 1)
    route = route.replace("{hash}", rng.choice(["3f9a2b7c1d", "a1b2c3d4e5f6", "0badc0ffee"]))
    route = route.replace("{uuid}", rng.choice(["9f1c2d3e-4b5a-6789-abcd-ef0123456789",
                                                "0e1d2c3b-4a59-6877-9abc-def012345678"]))
    return route + rng.choice(QUERIES)


def make_lines(n, seed=1234):
    rng = random.Random(seed)
    clients = ["10.0.%d.%d" % (rng.randint(0, 3), rng.randint(1, 254)) for _ in range(300)]
    lines = []
    t = 1696945500
    for i in range(n):
        t += rng.choice([0, 0, 1, 1, 2])
        hh, mm, ss = (t // 3600) % 24, (t // 60) % 60, t % 60
        latency = rng.lognormvariate(3.5, 0.8)
        if rng.random() < 0.01:
            latency *= 25
        r = rng.random()
        if r < 0.03:
            lines.append(rng.choice(["", "garbage line", "10.0.0.1 - - [bad date] \"GET\"", "2023-10-10 nolevel=1"]))
        elif r < 0.55:
            status = rng.choice([200] * 12 + [201, 204, 301, 304, 400, 401, 403, 404, 404, 500, 502, 503])
            lines.append('%s - %s [%02d/%s/2023:%02d:%02d:%02d +0000] "%s %s HTTP/1.1" %d %s "-" "%s" %.3f' % (
                rng.choice(clients), rng.choice(["-", "-", "alice", "bob"]), 10, MONTH_NAMES[9], hh, mm, ss,
                rng.choice(["GET", "GET", "GET", "POST", "PUT", "DELETE"]), make_path(rng), status,
                rng.choice(["-", str(rng.randint(100, 90000))]), rng.choice(AGENTS), latency / 1000.0))
        else:
            msg = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 18)))
            if rng.random() < 0.3:
                msg = msg.capitalize() + ": user=%d" % rng.randint(1, 500)
            lines.append('2023-10-10T%02d:%02d:%02dZ level=%s svc=%s path=%s latency_ms=%.2f client=%s msg="%s"' % (
                hh, mm, ss, rng.choice(LEVELS), rng.choice(SERVICES), make_path(rng), latency,
                rng.choice(clients), msg))
    return lines


def short_scale():
    """The share of the counted input to run: TARS's short count sets TARS_BENCH_SCALE
    (genome.toml's [fitness] short_scale); anything else runs the whole input."""
    try:
        value = float(os.environ.get("TARS_BENCH_SCALE", "1"))
    except ValueError:
        return 1.0
    return value if 0.0 < value <= 1.0 else 1.0


def scaled(n, scale):
    """``n`` items of input at ``scale``, at least one."""
    return max(1, round(n * scale))


def input_file():
    """The input a campaign gave the benchmark, or None: the file TARS_BENCH_INPUT names
    (default ``input.jsonl``), relative to this folder and inside it (the genome's tree,
    which is what the jail sees). A name set on purpose must be there; the default may not."""
    here = os.path.dirname(os.path.abspath(__file__))
    name = os.environ.get(INPUT_ENV, "")
    path = os.path.realpath(os.path.join(here, name or DEFAULT_INPUT))
    if os.path.isabs(name) or os.path.commonpath([here, path]) != here:
        raise SystemExit("%s=%s: the input must be a file inside the genome" % (INPUT_ENV, name))
    if not os.path.isfile(path):
        if name:
            raise SystemExit("%s=%s: no such file in the genome" % (INPUT_ENV, name))
        return None
    return path


def input_lines(path):
    """The log lines of a JSON-lines input: ``{"line": "..."}`` as it is, or a request
    record (client, method, path, status, latency_ms, agent) written as a combined-log line."""
    lines = []
    with open(path, encoding="utf-8") as f:
        for number, text in enumerate(f, 1):
            if not text.strip():
                continue
            row = json.loads(text)
            if "line" in row:
                lines.append(str(row["line"]))
                continue
            try:
                lines.append(COMBINED % (row["client"], row["method"], row["path"], row["status"],
                                         row.get("agent") or "-", row["latency_ms"] / 1000.0))
            except (KeyError, TypeError) as exc:
                raise SystemExit("%s line %d: not a request record (%s)" % (path, number, exc))
    return lines


def main():
    counted = os.environ.get("TARS_MEASURE") == "instructions"
    given = input_file()
    if given is not None:
        lines = input_lines(given)
        lines = lines[: scaled(len(lines), short_scale())] if counted else lines
    else:
        lines = make_lines(scaled(2000, short_scale()) if counted else N_LINES)
    best = None
    for _ in range(1 if counted else 3):
        start = time.process_time()
        render_report(summarise(lines))
        elapsed = time.process_time() - start
        best = elapsed if best is None else min(best, elapsed)
    print(json.dumps({"seconds": round(best, 6), "lines": len(lines)}))


if __name__ == "__main__":
    main()
