import unittest

from logstats.search import keyword_counts, search, term_frequencies, tokenize


def msgs(*texts):
    return [{"message": t} for t in texts]


class TokenizeTests(unittest.TestCase):
    def test_stopwords_case_and_short_words(self):
        self.assertEqual(tokenize("The Payment FAILED for user 42 after a timeout"),
                         ["payment", "failed", "user", "42", "timeout"])
        self.assertEqual(tokenize("x y z"), [])
        self.assertEqual(tokenize(""), [])
        self.assertEqual(tokenize("it is what it is"), [])

    def test_punctuation_and_unicode(self):
        self.assertEqual(tokenize("café-crème: naïve_user, Ünïcödé!"), ["café", "crème", "naïve_user", "ünïcödé"])
        self.assertEqual(tokenize("retry retry RETRY"), ["retry", "retry", "retry"])


class SearchTests(unittest.TestCase):
    def setUp(self):
        self.recs = msgs("db timeout on write", "login failed", "all good", "timeout then failed", "")

    def test_any(self):
        self.assertEqual([r["message"] for r in search(self.recs, ["TIMEOUT", "failed"])],
                         ["db timeout on write", "login failed", "timeout then failed"])

    def test_all(self):
        self.assertEqual([r["message"] for r in search(self.recs, ["timeout", "failed"], mode="all")],
                         ["timeout then failed"])

    def test_empty_keywords(self):
        self.assertEqual(search(self.recs, []), [])
        self.assertEqual(len(search(self.recs, [], mode="all")), 5)
        self.assertEqual(search([], ["x"]), [])

    def test_term_frequencies(self):
        freq = term_frequencies(self.recs)
        self.assertEqual(list(freq.items()), [("db", 1), ("timeout", 2), ("write", 1), ("login", 1),
                                              ("failed", 2), ("good", 1)])
        self.assertEqual(term_frequencies([]), {})

    def test_keyword_counts(self):
        self.assertEqual(keyword_counts(self.recs, ("timeout", "failed", "missing")),
                         {"timeout": 2, "failed": 2, "missing": 0})
        self.assertEqual(list(keyword_counts(self.recs, ["b", "a"])), ["b", "a"])
        self.assertEqual(keyword_counts([], ["a"]), {"a": 0})


if __name__ == "__main__":
    unittest.main()
