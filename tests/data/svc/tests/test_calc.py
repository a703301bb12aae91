import unittest

from svc.calc import add, words


class CalcTests(unittest.TestCase):
    def test_add(self):
        self.assertEqual(add(1, 2), 3)

    def test_words(self):
        self.assertEqual(words("a b")["count"], 2)
