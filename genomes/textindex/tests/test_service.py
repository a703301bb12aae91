import unittest

from textindex.service import highlight, search

DOCS = ["The quick brown fox.", "Foxes are quick; dogs are lazy.", "Search ranks documents."]


class ServiceTests(unittest.TestCase):
    def test_search(self):
        hits = search(DOCS, "quick fox")
        self.assertEqual(sorted(doc for _, doc in hits), [0, 1])
        self.assertEqual(search(DOCS, "absent"), [])

    def test_highlight(self):
        hits = highlight(DOCS, "documents", width=3)
        self.assertEqual(hits[0]["doc"], 2)
        self.assertIn("[documents.]", hits[0]["snippet"])
