"""Benchmark: queries against an index of a deterministic synthetic corpus.

Only the query phase (search + ranking + snippets of the top hits) is timed.
Prints one JSON line last: {"queries_per_second": <best of 3>, "queries": <n>, "docs": <n>}.
"""

import json
import os
import random
import time

from textindex import Index, search, snippet, tokenize

# TARS_BENCH_SCALE (the cascade's short count, [fitness] short_scale, which applies when
# the genome is judged by instruction counts) runs a share of the corpus and the queries
_SCALE = float(os.environ.get("TARS_BENCH_SCALE", "1") or 1)
_SCALE = _SCALE if 0.0 < _SCALE <= 1.0 else 1.0
N_DOCS = max(1, round(1500 * _SCALE))
N_QUERIES = max(1, round(120 * _SCALE))

STOP = ["the", "a", "of", "and", "to", "in", "is", "for", "on", "with", "as", "was", "that", "by"]
ROOTS = ["index", "search", "rank", "query", "token", "engine", "shard", "cluster", "replica",
         "cache", "latency", "score", "vector", "document", "field", "filter", "merge", "segment",
         "commit", "flush", "analyzer", "stemmer", "posting", "lexicon", "snippet", "highlight",
         "boolean", "phrase", "fuzzy", "prefix", "weight", "boost", "relevance", "recall",
         "precision", "crawler", "parser", "schema", "storage", "memory", "thread", "worker"]
ENDINGS = ["", "", "", "s", "ing", "ed", "ment", "ness", "ly", "ies"]


def make_corpus(rng):
    vocab = [root + end for root in ROOTS for end in ENDINGS]
    docs = []
    for i in range(N_DOCS):
        words = []
        for _ in range(rng.randint(30, 90)):
            words.append(rng.choice(STOP) if rng.random() < 0.35 else rng.choice(vocab))
        words[0] = words[0].capitalize()
        docs.append(("doc%05d" % i, " ".join(words) + "."))
    return docs


def make_queries(rng):
    queries = []
    for _ in range(N_QUERIES):
        groups = []
        for _ in range(rng.choice([1, 1, 2])):
            groups.append(" ".join(rng.choice(ROOTS) + rng.choice(ENDINGS) for _ in range(rng.choice([1, 2]))))
        queries.append(" OR ".join(groups))
    return queries


def run(index, queries):
    shown = 0
    for q in queries:
        hits = search(index, q, k=10)
        terms = tokenize(q.replace(" OR ", " "))
        for score, doc_id in hits[:5]:
            shown += len(snippet(index.texts[doc_id], terms))
    return shown


def main():
    rng = random.Random(1234)
    index = Index().add_many(make_corpus(rng))
    queries = make_queries(rng)
    best = None
    for _ in range(3):
        start = time.process_time()
        run(index, queries)
        elapsed = time.process_time() - start
        best = elapsed if best is None else min(best, elapsed)
    print(json.dumps({"queries_per_second": round(len(queries) / best, 3), "queries": len(queries), "docs": N_DOCS}))


if __name__ == "__main__":
    main()
