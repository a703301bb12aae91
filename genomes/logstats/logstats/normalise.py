"""Normalise parsed records: canonical paths, agent classes, levels, minutes."""

import re
from urllib.parse import unquote

BOT_AGENTS = [
    "googlebot", "bingbot", "slurp", "duckduckbot", "baiduspider", "yandexbot", "sogou",
    "exabot", "facebot", "facebookexternalhit", "ia_archiver", "mj12bot", "ahrefsbot",
    "semrushbot", "dotbot", "rogerbot", "seznambot", "petalbot", "applebot", "twitterbot",
    "linkedinbot", "slackbot", "discordbot", "telegrambot", "whatsapp", "pinterestbot",
    "embedly", "quora", "outbrain", "vkshare", "w3c_validator", "redditbot", "bytespider",
    "gptbot", "ccbot", "claudebot", "amazonbot", "dataforseobot", "blexbot", "megaindex",
    "screaming", "uptimerobot", "pingdom", "statuscake", "site24x7", "newrelicpinger",
    "datadog", "zgrab", "masscan", "nmap", "nikto", "sqlmap", "headlesschrome", "phantomjs",
]

CLI_AGENTS = ["curl", "wget", "python-requests", "go-http-client", "httpie", "okhttp", "java", "libwww-perl"]

STATIC_EXTENSIONS = [
    "css", "js", "mjs", "map", "png", "jpg", "jpeg", "gif", "svg", "ico", "webp", "avif", "bmp",
    "tif", "tiff", "woff", "woff2", "ttf", "otf", "eot", "mp4", "webm", "ogg", "mp3", "wav",
    "flac", "m4a", "pdf", "zip", "gz", "tgz", "bz2", "xz", "7z", "rar", "txt", "csv", "xml",
    "rss", "atom", "json", "wasm", "swf", "flv", "avi", "mov", "mkv", "apk", "dmg", "exe",
    "msi", "deb", "rpm", "iso", "psd", "ai", "eps", "doc", "docx", "xls", "xlsx", "ppt",
    "pptx", "odt", "ods", "epub", "mobi", "htc", "manifest", "appcache", "vtt", "srt",
]

LEVEL_ALIASES = {
    "warning": "WARN", "warn": "WARN", "err": "ERROR", "error": "ERROR", "fatal": "ERROR",
    "critical": "ERROR", "crit": "ERROR", "info": "INFO", "notice": "INFO", "debug": "DEBUG",
    "trace": "DEBUG",
}


HEX_DIGITS = "0123456789abcdef"


def normalise_path(path):
    """Canonical route for a request path: no query, lowercase, ids and hashes replaced."""
    path = path.split("?", 1)[0].split("#", 1)[0]
    parts = []
    for seg in path.split("/"):
        if seg == "" or seg == ".":
            continue
        if "%" in seg:
            seg = unquote(seg)
        seg = seg.split(";", 1)[0].strip().lower()
        if seg == "..":
            if parts:
                parts.pop()
            continue
        if seg.isdigit():
            seg = ":id"
        elif all(c in HEX_DIGITS or c == "-" for c in seg) and any(c.isdigit() for c in seg) and len(seg) >= 16:
            seg = ":uuid"
        elif "." in seg:
            stem, ext = seg.rsplit(".", 1)
            tail = stem.rsplit(".", 1)[-1]
            if len(tail) >= 8 and all(c in HEX_DIGITS for c in tail):
                seg = stem[: len(stem) - len(tail)] + ":hash." + ext
        elif seg[:1] == "v" and seg[1:].isdigit():
            seg = "v" + str(int(seg[1:]))
        else:
            # mostly-digit tokens such as "a123456" or "12-34" are ids too
            digits = 0
            for c in seg:
                if c.isdigit():
                    digits += 1
            if digits and digits * 2 >= len(seg):
                seg = ":id"
        parts.append(seg)
    return "/" + "/".join(parts)


def classify_agent(agent):
    """One of 'bot', 'cli', 'mobile', 'browser', 'unknown'."""
    if not agent or agent == "-":
        return "unknown"
    words = re.split(r"[\s/;(),]+", agent.lower())
    for word in words:
        if word in BOT_AGENTS:
            return "bot"
        if word.endswith("bot") or word.endswith("spider") or word.endswith("crawler"):
            return "bot"
    for word in words:
        if word in CLI_AGENTS:
            return "cli"
    if "mobile" in words or "android" in words or "iphone" in words:
        return "mobile"
    if "mozilla" in words:
        return "browser"
    return "unknown"


def is_static(path):
    last = path.rsplit("/", 1)[-1]
    if "." not in last:
        return False
    ext = last.rsplit(".", 1)[-1].lower()
    return ext in STATIC_EXTENSIONS


def normalise_level(level):
    level = (level or "").strip()
    return LEVEL_ALIASES.get(level.lower(), level.upper() or "INFO")


def normalise_record(rec):
    out = dict(rec)
    out["raw_path"] = rec.get("path") or ""
    out["path"] = normalise_path(rec["path"]) if rec.get("path") else "-"
    out["agent_kind"] = classify_agent(rec.get("agent") or "")
    out["minute"] = rec["ts"][:16]
    out["static"] = is_static(out["path"])
    out["level"] = normalise_level(rec.get("level"))
    out["message"] = " ".join((rec.get("message") or "").split())
    return out


def normalise_records(records):
    result = []
    for rec in records:
        result.append(normalise_record(rec))
    return result


def drop_noise(records, ignore_kinds=("bot",)):
    """Records that are neither static assets nor from an ignored agent kind."""
    kept = []
    for rec in records:
        if rec["agent_kind"] not in set(ignore_kinds) and not rec["static"]:
            kept.append(rec)
    return kept
