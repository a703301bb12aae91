"""Aggregations over normalised records."""

import bisect
import math

# latency bucket edges in ms (kept in the order ops asked for them; sorted when used)
DEFAULT_BOUNDS = [100, 250, 500, 1000, 50, 25, 10, 5, 2500, 5000, 75, 150, 200, 300, 400, 750,
                  1500, 2000, 3000, 4000, 7500, 10000, 15, 20, 30, 40, 60, 80, 90, 125, 175, 350]


def status_counts(records):
    counts = {}
    for rec in records:
        status = rec.get("status")
        if status is None:
            continue
        counts[status] = counts.get(status, 0) + 1
    return dict(sorted(counts.items()))


def percentile(ordered, pct):
    """Nearest-rank percentile of an already sorted list (None when empty)."""
    if not ordered:
        return None
    rank = math.ceil(pct / 100.0 * len(ordered))
    return ordered[min(max(rank, 1), len(ordered)) - 1]


def path_latency(records, percentiles=(50, 90, 99)):
    """Per path: count, min, max and the requested latency percentiles."""
    by_path = {}
    for rec in records:
        lat = rec.get("latency_ms")
        if lat is None:
            continue
        by_path.setdefault(rec["path"], []).append(lat)
    table = {}
    for path in sorted(by_path):
        lats = by_path[path]
        ordered = sorted(lats)
        row = {"count": len(lats), "min": sorted(lats)[0], "max": sorted(lats)[-1]}
        for pct in percentiles:
            row["p%g" % pct] = percentile(ordered, pct)
        table[path] = row
    return table


def latency_histogram(records, bounds=DEFAULT_BOUNDS):
    """Counts of latencies per bucket; bucket i holds values <= bounds[i] (last: above all)."""
    counts = [0] * (len(bounds) + 1)
    for rec in records:
        lat = rec.get("latency_ms")
        if lat is None:
            continue
        counts[bisect.bisect_left(sorted(bounds), lat)] += 1
    return counts


def top_n(counts, n):
    """The n largest (key, count) pairs, biggest first; ties keep insertion order."""
    return sorted(counts.items(), key=lambda kv: kv[1], reverse=True)[:n]


def top_clients(records, n=10):
    counts = {}
    for rec in records:
        client = rec.get("client") or "-"
        counts[client] = counts.get(client, 0) + 1
    return top_n(counts, n)


def error_rate_per_minute(records):
    """[(minute, total, errors, rate, worst_path)] sorted by minute."""
    minutes = {}
    for rec in records:
        bucket = minutes.get(rec["minute"])
        if bucket is None:
            bucket = minutes[rec["minute"]] = {"total": 0, "errors": 0, "paths": {}}
        bucket["total"] += 1
        if rec["level"] == "ERROR" or (rec.get("status") or 0) >= 500:
            bucket["errors"] += 1
            bucket["paths"][rec["path"]] = bucket["paths"].get(rec["path"], 0) + 1
    rows = []
    for minute in sorted(minutes):
        bucket = minutes[minute]
        worst = top_n(bucket["paths"], 1)
        rate = round(bucket["errors"] / bucket["total"], 4)
        rows.append((minute, bucket["total"], bucket["errors"], rate, worst[0][0] if worst else "-"))
    return rows


def find_spikes(records, window=80, factor=2.0):
    """Requests slower than `factor` times the slowest of the `window` requests before them.

    Returns [(ts, path, latency, path of the previous peak)].
    """
    history = []
    spikes = []
    for rec in records:
        lat = rec.get("latency_ms")
        if lat is None:
            continue
        if len(history) >= window:
            recent = history[-window:]
            peak_lat, peak_path = sorted(recent)[-1]
            if lat > factor * peak_lat:
                spikes.append((rec["ts"], rec["path"], lat, peak_path))
        history.append((lat, rec["path"]))
    return spikes
