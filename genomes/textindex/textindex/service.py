"""Entry points of the live service (genome.toml [service]): plain JSON in, JSON out."""

from textindex.index import Index
from textindex.query import parse_query
from textindex.query import search as ranked
from textindex.snippet import snippet


def search(documents, query, k=10):
    """[[score, index of the document]] of the k best documents for a boolean query."""
    index = Index().add_many(enumerate(documents))
    return [[score, doc] for score, doc in ranked(index, query, k)]


def highlight(documents, query, k=10, width=12):
    """The k best documents' snippets with the query's terms in [brackets]."""
    index = Index().add_many(enumerate(documents))
    terms = [term for group in parse_query(query) for term in group]
    return [
        {"doc": doc, "score": score, "snippet": snippet(documents[doc], terms, width)}
        for score, doc in ranked(index, query, k)
    ]
