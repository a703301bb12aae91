"""Snippets: a short window of a document around its first query hit, hits in [brackets]."""

import re

from textindex.tokenize import tokenize


def snippet(text, query_terms, width=12):
    """Up to `width` words starting a little before the first word whose stem is a query term."""
    words = re.findall(r"\S+", text)
    keys = []
    for word in words:
        keys.append(" ".join(tokenize(word)))
    first = 0
    for i, key in enumerate(keys):
        if key and key in set(query_terms):
            first = i
            break
    start = max(0, first - width // 4)
    out = ""
    for i in range(start, min(len(words), start + width)):
        if keys[i] and keys[i] in set(query_terms):
            out += "[" + words[i] + "] "
        else:
            out += words[i] + " "
    out = out.strip()
    if start > 0:
        out = "... " + out
    if start + width < len(words):
        out = out + " ..."
    return out


