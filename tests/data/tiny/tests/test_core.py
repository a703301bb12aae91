import unittest

from tiny.core import count_common, summary


class CoreTest(unittest.TestCase):
    def test_count(self):
        self.assertEqual(count_common(["the", "zebra", "of", "of", "quark"]), 3)

    def test_empty(self):
        self.assertEqual(count_common([]), 0)
        self.assertEqual(summary([]), [])

    def test_summary(self):
        self.assertEqual(summary(["zebra", "the", "ant", "zebra"]), [("ant", 1), ("zebra", 2)])


if __name__ == "__main__":
    unittest.main()
