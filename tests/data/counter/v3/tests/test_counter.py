import unittest

from counter import store


class CounterTest(unittest.TestCase):
    def test_bump_and_read(self) -> None:
        state = store.initial()
        first, state = store.bump(state, "a")
        second, state = store.bump(state, "a", by=2)
        self.assertEqual((first, second), (1, 3))
        self.assertEqual(store.read(state, "a")[0], 3)


if __name__ == "__main__":
    unittest.main()
