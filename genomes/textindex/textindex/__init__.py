"""textindex: a small inverted index with boolean queries, TF-IDF ranking and snippets."""

from textindex.index import Index
from textindex.query import parse_query, rank, search
from textindex.snippet import snippet
from textindex.tokenize import stem, tokenize

__all__ = ["Index", "parse_query", "rank", "search", "snippet", "stem", "tokenize"]
