"""Run the whole pipeline and render a plain-text report."""

from logstats.aggregate import (
    DEFAULT_BOUNDS,
    error_rate_per_minute,
    find_spikes,
    latency_histogram,
    path_latency,
    status_counts,
    top_clients,
    top_n,
)
from logstats.normalise import drop_noise, normalise_records
from logstats.parse import parse_lines
from logstats.search import keyword_counts, search, term_frequencies

DEFAULT_KEYWORDS = ("timeout", "failed", "refused", "retry", "deadlock", "denied", "exception",
                    "unavailable", "overflow", "panic", "killed", "corrupt")


def summarise(lines, keywords=DEFAULT_KEYWORDS, top=5):
    parsed = parse_lines(lines)
    records = normalise_records(parsed.records)
    traffic = drop_noise(records)
    return {
        "lines": len(parsed.records) + parsed.rejected,
        "parsed": len(parsed.records),
        "rejected": parsed.rejected,
        "kinds": parsed.kinds,
        "levels": parsed.levels,
        "status": status_counts(records),
        "paths": path_latency(traffic),
        "histogram": latency_histogram(traffic),
        "histogram_all": latency_histogram(records),
        "clients": top_clients(traffic, top),
        "minutes": error_rate_per_minute(records),
        "spikes": find_spikes(records),
        "terms": top_n(term_frequencies(records), top),
        "keywords": keyword_counts(records, keywords),
        "matches": len(search(records, keywords)),
    }


def _fmt(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return "%.1f" % value
    return str(value)


def bucket_rows(counts, bounds=DEFAULT_BOUNDS):
    """Label the non-empty histogram buckets: [("<= 5 ms", n), ..., ("> 10000 ms", n)]."""
    edges = sorted(bounds)
    rows = []
    for i, n in enumerate(counts):
        if n:
            label = "<= %d ms" % edges[i] if i < len(edges) else "> %d ms" % edges[-1]
            rows.append((label, n))
    return rows


def render_counts(title, counts):
    text = "%s\n" % title
    for key, n in counts:
        text += "  %-24s %8d\n" % (key, n)
    return text


def render_paths(table):
    text = ""
    for path, row in table.items():
        text += "  %-32s %6d %8s %8s %8s %8s\n" % (
            path[:32], row["count"], _fmt(row.get("p50")), _fmt(row.get("p90")),
            _fmt(row.get("p99")), _fmt(row["max"]),
        )
    return text


def render_minutes(rows):
    text = ""
    for minute, total, errors, rate, worst in rows:
        text += "  %s %6d %6d %7.2f%% %s\n" % (minute, total, errors, rate * 100, worst)
    return text


def render_report(summary):
    parts = [
        "logstats report",
        "===============",
        "lines %d, parsed %d, rejected %d" % (summary["lines"], summary["parsed"], summary["rejected"]),
        "",
        render_counts("kinds", summary["kinds"].items()),
        render_counts("levels", summary["levels"].items()),
        render_counts("status", summary["status"].items()),
        "latency by path (ms)",
        "  %-32s %6s %8s %8s %8s %8s" % ("path", "count", "p50", "p90", "p99", "max"),
        render_paths(summary["paths"]),
        render_counts("latency histogram", bucket_rows(summary["histogram"])),
        render_counts("latency histogram, all requests", bucket_rows(summary["histogram_all"])),
        render_counts("top clients", summary["clients"]),
        render_counts("top terms", summary["terms"]),
        render_counts("keywords", summary["keywords"].items()),
        "messages matching any keyword: %d" % summary["matches"],
        "",
        "spikes: %d" % len(summary["spikes"]),
        "errors per minute",
        render_minutes(summary["minutes"]),
    ]
    return "\n".join(parts)
