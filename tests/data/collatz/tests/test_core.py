import unittest

from collatz.core import longest, steps


class CoreTest(unittest.TestCase):
    def test_steps(self):
        self.assertEqual([steps(n) for n in (1, 2, 3, 6, 7)], [0, 1, 7, 8, 16])

    def test_longest_below_ten(self):
        self.assertEqual(longest(10)[:2], (9, 19))


if __name__ == "__main__":
    unittest.main()
