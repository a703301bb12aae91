import unittest

from fixtures import EXPECTED_REPORT, SAMPLE

from logstats.report import bucket_rows, render_counts, render_minutes, render_paths, render_report, summarise


class SummaryTests(unittest.TestCase):
    def test_summary_values(self):
        s = summarise(SAMPLE, top=3)
        self.assertEqual((s["lines"], s["parsed"], s["rejected"]), (11, 9, 2))
        self.assertEqual(s["status"], {200: 2, 304: 1, 404: 1, 500: 1})
        self.assertEqual(s["clients"], [("10.0.0.2", 3), ("10.0.0.4", 3), ("10.0.0.1", 2)])
        self.assertEqual(s["matches"], 3)
        self.assertEqual(s["keywords"]["timeout"], 2)
        self.assertEqual(s["spikes"], [])
        self.assertEqual(s["paths"]["/api/orders/:id"]["max"], 3000.0)

    def test_exact_report(self):
        self.assertEqual(render_report(summarise(SAMPLE, top=3)), EXPECTED_REPORT)

    def test_report_is_deterministic(self):
        self.assertEqual(render_report(summarise(SAMPLE, top=3)), render_report(summarise(list(SAMPLE), top=3)))

    def test_empty_input(self):
        text = render_report(summarise([]))
        self.assertIn("lines 0, parsed 0, rejected 0", text)
        self.assertIn("messages matching any keyword: 0", text)
        self.assertTrue(text.endswith("errors per minute\n"))

    def test_only_malformed(self):
        s = summarise(["junk", "", "1.2.3.4 nope"])
        self.assertEqual((s["parsed"], s["rejected"]), (0, 3))

    def test_custom_keywords(self):
        s = summarise(SAMPLE, keywords=["café", "results"])
        self.assertEqual(s["keywords"], {"café": 1, "results": 1})
        self.assertEqual(s["matches"], 1)


class RenderTests(unittest.TestCase):
    def test_render_counts(self):
        self.assertEqual(render_counts("t", [("a", 1), ("b", 22)]),
                         "t\n  a                               1\n  b                              22\n")
        self.assertEqual(render_counts("t", []), "t\n")

    def test_render_paths_and_minutes(self):
        row = {"count": 2, "min": 1.0, "max": 2.5, "p50": 1.0, "p90": None, "p99": 2}
        self.assertEqual(render_paths({"/x": row}),
                         "  /x                                    2      1.0        -        2      2.5\n")
        self.assertEqual(render_paths({}), "")
        self.assertEqual(render_minutes([("m", 4, 1, 0.25, "/p")]), "  m      4      1   25.00% /p\n")
        self.assertEqual(render_minutes([]), "")

    def test_bucket_rows(self):
        self.assertEqual(bucket_rows([1, 0, 2], bounds=[10, 5]), [("<= 5 ms", 1), ("> 10 ms", 2)])
        self.assertEqual(bucket_rows([0, 0, 0], bounds=[10, 5]), [])


if __name__ == "__main__":
    unittest.main()
