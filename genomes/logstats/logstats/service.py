"""Entry points of the live service (genome.toml [service]): plain JSON in, JSON out."""

from logstats.normalise import normalise_records
from logstats.parse import parse_lines
from logstats.report import render_report, summarise
from logstats.search import search


def report(lines, top=5):
    """The plain-text report of some log lines."""
    return render_report(summarise(lines, top=top))


def find(lines, keywords, mode="any"):
    """The messages (with time and level) of the lines holding any (or all) keywords."""
    records = normalise_records(parse_lines(lines).records)
    return [
        {"ts": rec.get("ts"), "level": rec.get("level"), "message": rec["message"]}
        for rec in search(records, keywords, mode)
    ]
