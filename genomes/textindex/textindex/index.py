"""The inverted index: term -> {doc_id: term frequency}."""

from textindex.tokenize import tokenize


class Index:
    def __init__(self):
        self.postings = {}
        self.doc_lengths = {}
        self.texts = {}

    def __len__(self):
        return len(self.doc_lengths)

    def add(self, doc_id, text):
        if doc_id in self.texts:
            raise ValueError("document %r already indexed" % (doc_id,))
        tokens = tokenize(text)
        self.texts[doc_id] = text
        self.doc_lengths[doc_id] = len(tokens)
        for tok in tokens:
            docs = self.postings.setdefault(tok, {})
            docs[doc_id] = docs.get(doc_id, 0) + 1

    def add_many(self, docs):
        for doc_id, text in docs:
            self.add(doc_id, text)
        return self

    def docs_with(self, term):
        """Sorted ids of the documents holding an (already tokenized) term."""
        return sorted(self.postings.get(term, {}))

    def vocabulary(self):
        return sorted(self.postings)
