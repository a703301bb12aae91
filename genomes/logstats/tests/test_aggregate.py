import unittest

from logstats.aggregate import (
    DEFAULT_BOUNDS,
    error_rate_per_minute,
    find_spikes,
    latency_histogram,
    path_latency,
    percentile,
    status_counts,
    top_clients,
    top_n,
)


def rec(path="/a", lat=10.0, status=200, level="INFO", minute="2023-10-10 10:00", client="c1", ts=None):
    return {"path": path, "latency_ms": lat, "status": status, "level": level, "minute": minute,
            "client": client, "ts": ts or minute + ":00"}


class StatusTests(unittest.TestCase):
    def test_sorted_counts_skip_none(self):
        recs = [rec(status=500), rec(status=200), rec(status=None), rec(status=200)]
        self.assertEqual(list(status_counts(recs).items()), [(200, 2), (500, 1)])
        self.assertEqual(status_counts([]), {})


class PercentileTests(unittest.TestCase):
    def test_nearest_rank(self):
        vals = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
        self.assertEqual(percentile(vals, 50), 5)
        self.assertEqual(percentile(vals, 90), 9)
        self.assertEqual(percentile(vals, 99), 10)
        self.assertEqual(percentile(vals, 0), 1)
        self.assertEqual(percentile(vals, 100), 10)
        self.assertEqual(percentile([7], 50), 7)
        self.assertIsNone(percentile([], 50))

    def test_path_latency(self):
        recs = [rec("/a", 30.0), rec("/b", 5.0), rec("/a", 10.0), rec("/a", None), rec("/a", 20.0)]
        table = path_latency(recs)
        self.assertEqual(list(table), ["/a", "/b"])
        self.assertEqual(table["/a"], {"count": 3, "min": 10.0, "max": 30.0, "p50": 20.0, "p90": 30.0, "p99": 30.0})
        self.assertEqual(table["/b"]["min"], 5.0)
        self.assertEqual(path_latency(recs, percentiles=(25,))["/a"]["p25"], 10.0)
        self.assertEqual(path_latency([]), {})


class HistogramTests(unittest.TestCase):
    def test_unsorted_bounds(self):
        recs = [rec(lat=v) for v in (1, 5, 6, 10, 11, 100, None)]
        self.assertEqual(latency_histogram(recs, bounds=[10, 5]), [2, 2, 2])

    def test_default_bounds(self):
        counts = latency_histogram([rec(lat=0.5), rec(lat=99999.0)])
        self.assertEqual(len(counts), len(DEFAULT_BOUNDS) + 1)
        self.assertEqual(counts[0], 1)
        self.assertEqual(counts[-1], 1)
        self.assertEqual(sum(latency_histogram([])), 0)


class TopTests(unittest.TestCase):
    def test_top_n_ties_keep_insertion_order(self):
        counts = {"b": 2, "a": 3, "c": 2, "d": 1, "e": 2}
        self.assertEqual(top_n(counts, 3), [("a", 3), ("b", 2), ("c", 2)])
        self.assertEqual(top_n(counts, 4), [("a", 3), ("b", 2), ("c", 2), ("e", 2)])
        self.assertEqual(top_n(counts, 0), [])
        self.assertEqual(top_n(counts, 10)[-1], ("d", 1))
        self.assertEqual(top_n({}, 3), [])

    def test_top_clients(self):
        recs = [rec(client="x"), rec(client="y"), rec(client="y"), rec(client=None), rec(client="x"), rec(client="z")]
        self.assertEqual(top_clients(recs, 2), [("x", 2), ("y", 2)])
        self.assertEqual(top_clients(recs, 10)[-2:], [("-", 1), ("z", 1)])


class MinuteTests(unittest.TestCase):
    def test_error_rate(self):
        recs = [
            rec(minute="2023-10-10 10:01", level="ERROR", path="/x"),
            rec(minute="2023-10-10 10:00"),
            rec(minute="2023-10-10 10:01", status=503, path="/y"),
            rec(minute="2023-10-10 10:01", status=503, path="/y"),
            rec(minute="2023-10-10 10:01", status=None),
        ]
        self.assertEqual(error_rate_per_minute(recs), [
            ("2023-10-10 10:00", 1, 0, 0.0, "-"),
            ("2023-10-10 10:01", 4, 3, 0.75, "/y"),
        ])
        self.assertEqual(error_rate_per_minute([]), [])

    def test_worst_path_tie_first_seen(self):
        recs = [rec(level="ERROR", path="/b"), rec(level="ERROR", path="/a")]
        self.assertEqual(error_rate_per_minute(recs)[0][4], "/b")


class SpikeTests(unittest.TestCase):
    def test_spikes(self):
        lats = [10, 12, 11, 30, 9, 100, None, 8, 250]
        recs = [rec(path="/p%d" % i, lat=v, ts="t%d" % i) for i, v in enumerate(lats)]
        self.assertEqual(find_spikes(recs, window=3, factor=2.0), [("t3", "/p3", 30, "/p1"), ("t5", "/p5", 100, "/p3"), ("t8", "/p8", 250, "/p5")])
        self.assertEqual(find_spikes(recs), [])
        self.assertEqual(find_spikes([]), [])

    def test_peak_tie_uses_path_order(self):
        recs = [rec(path="/b", lat=10), rec(path="/a", lat=10), rec(path="/c", lat=50)]
        self.assertEqual(find_spikes(recs, window=2), [("2023-10-10 10:00:00", "/c", 50, "/b")])


if __name__ == "__main__":
    unittest.main()
