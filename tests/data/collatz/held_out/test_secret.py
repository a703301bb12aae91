import unittest

from collatz.core import longest, steps


class Secret(unittest.TestCase):
    def test_chains_the_visible_tests_do_not_check(self):
        self.assertEqual(steps(27), 111)
        self.assertEqual(steps(97), 118)
        self.assertEqual(longest(1000), (871, 178, 999))
