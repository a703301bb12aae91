"""logstats: parse, normalise, aggregate and report on web/app log lines."""

from logstats.aggregate import (
    error_rate_per_minute,
    find_spikes,
    latency_histogram,
    path_latency,
    percentile,
    status_counts,
    top_clients,
    top_n,
)
from logstats.normalise import classify_agent, drop_noise, is_static, normalise_level, normalise_path, normalise_record, normalise_records
from logstats.parse import ParseResult, parse_access_line, parse_app_line, parse_line, parse_lines
from logstats.report import render_report, summarise
from logstats.search import keyword_counts, search, term_frequencies, tokenize

__all__ = [
    "ParseResult", "parse_access_line", "parse_app_line", "parse_line", "parse_lines",
    "classify_agent", "drop_noise", "is_static", "normalise_level", "normalise_path",
    "normalise_record", "normalise_records",
    "error_rate_per_minute", "find_spikes", "latency_histogram", "path_latency", "percentile",
    "status_counts", "top_clients", "top_n",
    "keyword_counts", "search", "term_frequencies", "tokenize",
    "render_report", "summarise",
]
