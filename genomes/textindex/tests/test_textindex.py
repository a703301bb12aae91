import unittest

from textindex import Index, parse_query, rank, search, snippet, stem, tokenize
from textindex.query import matching

DOCS = [
    ("d1", "The quick brown fox jumps over the lazy dog."),
    ("d2", "Foxes are quick; dogs are lazy sleepers."),
    ("d3", "Search engines rank documents by relevance and ranking signals."),
    ("d4", "Indexing documents quickly: the index stores postings for every term."),
    ("d5", "Café naïve résumé — unicode words are tokens too."),
]


def build():
    return Index().add_many(DOCS)


class TokenizeTests(unittest.TestCase):
    def test_stem(self):
        self.assertEqual(stem("ranking"), "rank")
        self.assertEqual(stem("queries"), "query")
        self.assertEqual(stem("foxes"), "fox")
        self.assertEqual(stem("dogs"), "dog")
        self.assertEqual(stem("is"), "is")
        self.assertEqual(stem("sing"), "sing")
        self.assertEqual(stem("quickly"), "quick")
        self.assertEqual(stem(""), "")

    def test_tokenize(self):
        self.assertEqual(tokenize("The Foxes, and the DOGS!"), ["fox", "dog"])
        self.assertEqual(tokenize(""), [])
        self.assertEqual(tokenize("of the a"), [])
        self.assertEqual(tokenize("snake_case x2"), ["snake", "case", "x2"])

    def test_unicode(self):
        self.assertEqual(tokenize("Café NAÏVE résumés"), ["café", "naïve", "résumé"])


class IndexTests(unittest.TestCase):
    def test_postings_and_lengths(self):
        idx = build()
        self.assertEqual(len(idx), 5)
        self.assertEqual(idx.postings["fox"], {"d1": 1, "d2": 1})
        self.assertEqual(idx.postings["rank"], {"d3": 2})
        self.assertEqual(idx.doc_lengths["d1"], 6)
        self.assertEqual(idx.docs_with("lazy"), ["d1", "d2"])
        self.assertEqual(idx.docs_with("missing"), [])
        self.assertIn("docu", idx.vocabulary())
        self.assertEqual(idx.vocabulary(), sorted(idx.vocabulary()))

    def test_duplicate_id(self):
        idx = build()
        with self.assertRaises(ValueError):
            idx.add("d1", "again")

    def test_empty_document(self):
        idx = Index()
        idx.add("e", "")
        self.assertEqual(idx.doc_lengths, {"e": 0})
        self.assertEqual(idx.postings, {})


class QueryTests(unittest.TestCase):
    def test_parse_query(self):
        self.assertEqual(parse_query("quick fox OR lazy dogs"), [["quick", "fox"], ["lazy", "dog"]])
        self.assertEqual(parse_query("fox AND dog"), [["fox", "dog"]])
        self.assertEqual(parse_query("the OR a"), [])
        self.assertEqual(parse_query(""), [])

    def test_matching(self):
        idx = build()
        self.assertEqual(matching(idx, [["quick", "fox"]]), ["d1", "d2"])
        self.assertEqual(matching(idx, [["fox", "jump"], ["rank"]]), ["d1", "d3"])
        self.assertEqual(matching(idx, [["fox", "nothing"]]), [])
        self.assertEqual(matching(idx, []), [])

    def test_rank_order_and_ties(self):
        idx = build()
        hits = rank(idx, ["d2", "d1"], ["fox"], k=10)
        self.assertEqual([d for _, d in hits], ["d2", "d1"])
        self.assertEqual(hits[0][0], 0.250552594)
        tied = rank(idx, ["d5", "d4", "d3"], ["zzz"], k=2)
        self.assertEqual(tied, [(0.0, "d3"), (0.0, "d4")])
        self.assertEqual(rank(idx, [], ["fox"]), [])

    def test_search(self):
        idx = build()
        self.assertEqual([d for _, d in search(idx, "documents")], ["d3", "d4"])
        self.assertEqual([d for _, d in search(idx, "lazy OR ranking", k=2)], ["d3", "d2"])
        self.assertEqual(search(idx, "nothing here"), [])
        self.assertEqual(search(idx, ""), [])
        self.assertEqual(search(idx, "café")[0][1], "d5")

    def test_search_k(self):
        idx = build()
        self.assertEqual(len(search(idx, "quick OR lazy OR rank", k=1)), 1)
        self.assertEqual(search(idx, "quick", k=0), [])


class MoreTests(unittest.TestCase):
    def test_stopwords_not_indexed(self):
        idx = build()
        for word in ("the", "and", "are", "by", "for"):
            self.assertNotIn(word, idx.postings)

    def test_and_query_requires_all_terms(self):
        idx = build()
        self.assertEqual([d for _, d in search(idx, "lazy AND jumps")], ["d1"])
        self.assertEqual(search(idx, "lazy AND ranking"), [])

    def test_term_frequency_counts_repeats(self):
        idx = Index()
        idx.add("r", "echo echo echo other")
        self.assertEqual(idx.postings["echo"], {"r": 3})
        self.assertEqual(idx.doc_lengths["r"], 4)


class SnippetTests(unittest.TestCase):
    def test_highlight(self):
        self.assertEqual(snippet(DOCS[0][1], ["fox"], width=4), "... brown [fox] jumps over ...")
        self.assertEqual(snippet(DOCS[1][1], ["fox", "dog"]), "[Foxes] are quick; [dogs] are lazy sleepers.")

    def test_window_moves_to_first_hit(self):
        text = " ".join("w%d" % i for i in range(40)) + " target " + " ".join("v%d" % i for i in range(40))
        self.assertEqual(snippet(text, ["target"], width=8), "... w38 w39 [target] v0 v1 v2 v3 v4 ...")

    def test_no_hit_and_empty(self):
        self.assertEqual(snippet("one two three", ["zzz"], width=2), "one two ...")
        self.assertEqual(snippet("", ["x"]), "")
        self.assertEqual(snippet("Café!", ["café"]), "[Café!]")


if __name__ == "__main__":
    unittest.main()
