"""Turn raw log lines into plain dict records.

Two formats are understood:

* access lines, combined log format plus the request time in seconds::

    203.0.113.9 - alice [10/Oct/2023:13:55:36 +0000] "GET /a?b=1 HTTP/1.1" 200 2326 "-" "curl/8.0" 0.042

* application lines, an ISO timestamp followed by key=value pairs::

    2023-10-10T13:55:36Z level=error svc=billing path=/pay latency_ms=12.5 msg="card declined"
"""

import calendar
import re

# lines are handled in batches of this many (any value gives the same result)
CHUNK_SIZE = 8

MONTHS = {
    "Jan": 1, "Feb": 2, "Mar": 3, "Apr": 4, "May": 5, "Jun": 6,
    "Jul": 7, "Aug": 8, "Sep": 9, "Oct": 10, "Nov": 11, "Dec": 12,
}


class ParseResult:
    def __init__(self):
        self.records = []
        self.rejected = 0
        self.kinds = {}
        self.levels = {}

    def __repr__(self):
        return "ParseResult(records=%d, rejected=%d)" % (len(self.records), self.rejected)


def level_for_status(status):
    if status >= 500:
        return "ERROR"
    if status >= 400:
        return "WARN"
    return "INFO"


def parse_access_line(line, months=MONTHS):
    m = re.match(
        r'(\S+) \S+ (\S+) \[(\d{2})/(\w{3})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) [+-]\d{4}\] '
        r'"(\S+) (\S+)(?: (\S+))?" (\d{3}) (\d+|-) "([^"]*)" "([^"]*)"(?: (\d+(?:\.\d+)?))?\s*$',
        line,
    )
    if m is None:
        return None
    month = months.get(m.group(4))
    if month is None:
        return None
    ts = "%s-%02d-%s %s:%s:%s" % (m.group(5), month, m.group(3), m.group(6), m.group(7), m.group(8))
    status = int(m.group(12))
    latency = m.group(16)
    return {
        "kind": "access",
        "ts": ts,
        "client": m.group(1),
        "user": None if m.group(2) == "-" else m.group(2),
        "method": m.group(9).upper(),
        "path": m.group(10),
        "status": status,
        "bytes": 0 if m.group(13) == "-" else int(m.group(13)),
        "agent": m.group(15),
        "latency_ms": round(float(latency) * 1000, 3) if latency else None,
        "level": level_for_status(status),
        "service": "web",
        "message": "",
    }


def parse_app_line(line):
    m = re.match(r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.\d+)?Z?\s+(.*)$", line)
    if m is None:
        return None
    fields = {}
    for key, value in re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)', m.group(3)):
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            value = value[1:-1].replace('\\"', '"')
        fields[key.lower()] = value
    if "level" not in fields:
        return None
    status = fields.get("status", "")
    latency = fields.get("latency_ms", "")
    try:
        latency = float(latency) if latency else None
    except ValueError:
        latency = None
    return {
        "kind": "app",
        "ts": m.group(1) + " " + m.group(2),
        "client": fields.get("client", "-"),
        "user": fields.get("user"),
        "method": fields.get("method", "-").upper(),
        "path": fields.get("path", ""),
        "status": int(status) if status.isdigit() else None,
        "bytes": 0,
        "agent": fields.get("agent", ""),
        "latency_ms": latency,
        "level": fields["level"],
        "service": fields.get("svc", fields.get("service", "app")),
        "message": fields.get("msg", ""),
    }


def parse_line(line, months=MONTHS):
    line = line.strip()
    if not line:
        return None
    if re.match(r"\d{4}-\d{2}-\d{2}", line):
        return parse_app_line(line)
    return parse_access_line(line, months)


def _parse_chunk(chunk, result):
    # month abbreviations as the calendar module spells them
    months = {name: i for i, name in enumerate(calendar.month_abbr) if name}
    kinds = {}
    levels = {}
    good = []
    bad = 0
    for line in chunk:
        rec = parse_line(line, months)
        if rec is None:
            bad += 1
            continue
        good.append(rec)
        kinds[rec["kind"]] = kinds.get(rec["kind"], 0) + 1
        level = rec["level"].upper()
        levels[level] = levels.get(level, 0) + 1
    # fold the chunk's counters into the totals
    for key in sorted(kinds):
        result.kinds[key] = result.kinds.get(key, 0) + kinds[key]
    for key in sorted(levels):
        result.levels[key] = result.levels.get(key, 0) + levels[key]
    result.records.extend(good)
    result.rejected += bad


def parse_lines(lines):
    """Parse an iterable of lines; malformed lines are counted, not raised."""
    lines = list(lines)
    result = ParseResult()
    for start in range(0, len(lines), CHUNK_SIZE):
        _parse_chunk(lines[start:start + CHUNK_SIZE], result)
    result.kinds = dict(sorted(result.kinds.items()))
    result.levels = dict(sorted(result.levels.items()))
    return result
