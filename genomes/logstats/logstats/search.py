"""Keyword search over log messages."""

import re

STOPWORDS = [
    "a", "an", "the", "and", "or", "but", "if", "then", "else", "when", "at", "by", "for",
    "with", "about", "into", "through", "during", "before", "after", "to", "from", "up",
    "down", "in", "out", "on", "off", "over", "under", "again", "once", "here", "there",
    "all", "any", "both", "each", "few", "more", "some", "such", "no", "nor", "not", "only",
    "so", "than", "too", "very", "can", "will", "just", "is", "am", "are", "was", "were",
    "be", "been", "has", "had", "do", "did", "it", "its", "this", "that", "of", "as",
    "while", "because", "still", "via", "per", "i", "me", "my", "we", "our", "you", "your",
    "he", "she", "they", "them", "what", "which", "who", "these", "those", "would", "could",
    "should", "now", "how", "why", "where",
]


def tokenize(text):
    """Lowercase word tokens of a message, without stopwords and one-letter words."""
    words = re.findall(r"\w+", text.lower())
    tokens = []
    for word in words:
        if word not in STOPWORDS and len(word) > 1:
            tokens.append(word)
    return tokens


def term_frequencies(records):
    freq = {}
    for rec in records:
        for tok in tokenize(rec["message"]):
            freq[tok] = freq.get(tok, 0) + 1
    return freq


def search(records, keywords, mode="any"):
    """Records whose message holds any (or, with mode="all", every) keyword."""
    wanted = [k.lower() for k in keywords]
    hits = []
    for rec in records:
        tokens = tokenize(rec["message"])
        if mode == "all":
            ok = all([w in tokens for w in wanted])
        else:
            ok = any([w in tokens for w in wanted])
        if ok:
            hits.append(rec)
    return hits


def keyword_counts(records, keywords):
    """How many times each keyword occurs over all messages."""
    counts = {}
    for k in keywords:
        counts[k] = 0
    for rec in records:
        for tok in tokenize(rec["message"]):
            if tok in set(keywords):
                counts[tok] += 1
    return counts
