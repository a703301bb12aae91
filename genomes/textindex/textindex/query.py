"""Boolean queries ("a b OR c" = (a AND b) OR c) and TF-IDF ranking."""

import math

from textindex.tokenize import tokenize


def parse_query(text):
    """A list of AND-groups of terms; the groups are OR-ed. Empty groups are dropped."""
    groups = []
    for part in text.split(" OR "):
        terms = tokenize(part.replace(" AND ", " "))
        if terms:
            groups.append(terms)
    return groups


def matching(index, groups):
    """Sorted ids of documents matching any group (a group matches if it has all its terms)."""
    found = set()
    for group in groups:
        docs = None
        for term in group:
            have = set(index.postings.get(term, {}))
            docs = have if docs is None else docs & have
        found |= docs or set()
    return sorted(found)


def rank(index, doc_ids, terms, k=10):
    """[(score, doc_id)] of the k best documents by TF-IDF, best first (ties: lower id first)."""
    doc_lengths = index.doc_lengths
    scored = []
    for doc_id in doc_ids:
        score = 0.0
        for term in terms:
            docs = index.postings.get(term)
            if not docs or doc_id not in docs:
                continue
            idf = math.log(1 + len(doc_lengths) / len(docs))
            score += docs[doc_id] / max(doc_lengths[doc_id], 1) * idf
        scored.append((round(score, 9), doc_id))
    scored.sort(key=lambda pair: pair[1])
    return sorted(scored, key=lambda pair: pair[0], reverse=True)[:k]


def search(index, text, k=10):
    groups = parse_query(text)
    terms = []
    for group in groups:
        for term in group:
            if term not in terms:
                terms.append(term)
    if not any([term in index.postings for term in terms]):
        return []
    return rank(index, matching(index, groups), terms, k)
