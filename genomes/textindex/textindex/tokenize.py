"""Tokenizer: lowercase words, stopwords removed, light suffix stemming."""

import re

STOPWORDS = [
    "a", "an", "the", "and", "or", "but", "if", "then", "else", "when", "at", "by", "for",
    "with", "about", "into", "through", "during", "before", "after", "to", "from", "up",
    "down", "in", "out", "on", "off", "over", "under", "again", "once", "here", "there",
    "all", "any", "both", "each", "few", "more", "some", "such", "no", "nor", "not", "only",
    "so", "than", "too", "very", "can", "will", "just", "is", "am", "are", "was", "were",
    "be", "been", "has", "had", "do", "did", "it", "its", "this", "that", "of", "as",
]

SUFFIXES = ("ational", "ization", "fulness", "ousness", "iveness", "ingly", "ments", "ness",
            "ment", "ings", "ing", "edly", "ed", "ies", "es", "ly", "s")


def stem(word):
    """Strip the longest known suffix, keeping a stem of at least three letters."""
    best = word
    for suffix in SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            candidate = word[: len(word) - len(suffix)]
            if suffix == "ies":
                candidate += "y"
            if len(candidate) < len(best):
                best = candidate
    return best


def tokenize(text):
    """Stemmed, lowercased word tokens of text, in order, without stopwords."""
    words = re.findall(r"[^\W_]+", text.lower())
    tokens = []
    for word in words:
        if word not in STOPWORDS:
            tokens.append(stem(word))
    return tokens
