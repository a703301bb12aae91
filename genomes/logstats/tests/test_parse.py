import unittest

from logstats import parse
from logstats.parse import parse_access_line, parse_app_line, parse_line, parse_lines

ACCESS = ('203.0.113.9 - alice [10/Oct/2023:13:55:36 +0000] "GET /a/b?c=1 HTTP/1.1" 200 2326 '
          '"http://ref/" "curl/8.0" 0.042')
APP = '2023-10-10T13:55:36.123Z level=error svc=billing path=/pay latency_ms=12.5 status=502 msg="card \\"x\\" declined"'


class AccessLineTests(unittest.TestCase):
    def test_fields(self):
        rec = parse_access_line(ACCESS)
        self.assertEqual(rec["kind"], "access")
        self.assertEqual(rec["ts"], "2023-10-10 13:55:36")
        self.assertEqual(rec["client"], "203.0.113.9")
        self.assertEqual(rec["user"], "alice")
        self.assertEqual(rec["method"], "GET")
        self.assertEqual(rec["path"], "/a/b?c=1")
        self.assertEqual(rec["status"], 200)
        self.assertEqual(rec["bytes"], 2326)
        self.assertEqual(rec["agent"], "curl/8.0")
        self.assertEqual(rec["latency_ms"], 42.0)
        self.assertEqual(rec["level"], "INFO")
        self.assertEqual(rec["message"], "")

    def test_dash_bytes_and_no_latency_and_levels(self):
        rec = parse_access_line('1.2.3.4 - - [01/Jan/2024:00:00:00 +0100] "get / HTTP/1.0" 503 - "-" "-"')
        self.assertEqual(rec["bytes"], 0)
        self.assertIsNone(rec["latency_ms"])
        self.assertIsNone(rec["user"])
        self.assertEqual(rec["method"], "GET")
        self.assertEqual(rec["level"], "ERROR")
        rec = parse_access_line('1.2.3.4 - - [01/Jan/2024:00:00:00 +0100] "GET / HTTP/1.0" 404 1 "-" "-" 1')
        self.assertEqual(rec["level"], "WARN")
        self.assertEqual(rec["latency_ms"], 1000.0)

    def test_bad_month_and_garbage(self):
        self.assertIsNone(parse_access_line('1.2.3.4 - - [01/Foo/2024:00:00:00 +0000] "GET / HTTP/1.0" 200 1 "-" "-"'))
        self.assertIsNone(parse_access_line("not a log line"))
        self.assertIsNone(parse_access_line(""))

    def test_custom_month_table(self):
        line = '1.2.3.4 - - [01/Foo/2024:00:00:00 +0000] "GET / HTTP/1.0" 200 1 "-" "-"'
        self.assertEqual(parse_access_line(line, {"Foo": 7})["ts"], "2024-07-01 00:00:00")


class AppLineTests(unittest.TestCase):
    def test_fields(self):
        rec = parse_app_line(APP)
        self.assertEqual(rec["kind"], "app")
        self.assertEqual(rec["ts"], "2023-10-10 13:55:36")
        self.assertEqual(rec["level"], "error")
        self.assertEqual(rec["service"], "billing")
        self.assertEqual(rec["path"], "/pay")
        self.assertEqual(rec["latency_ms"], 12.5)
        self.assertEqual(rec["status"], 502)
        self.assertEqual(rec["message"], 'card "x" declined')
        self.assertEqual(rec["client"], "-")
        self.assertEqual(rec["method"], "-")

    def test_missing_level_and_bad_latency(self):
        self.assertIsNone(parse_app_line("2023-10-10 12:00:00 msg=hello"))
        rec = parse_app_line("2023-10-10 12:00:00 LEVEL=info latency_ms=abc status=x")
        self.assertIsNone(rec["latency_ms"])
        self.assertIsNone(rec["status"])
        self.assertEqual(rec["service"], "app")
        self.assertIsNone(parse_app_line("garbage"))

    def test_unicode_message(self):
        rec = parse_app_line('2023-10-10T00:00:00Z level=info msg="naïve café ☕ ok"')
        self.assertEqual(rec["message"], "naïve café ☕ ok")


class ParseLinesTests(unittest.TestCase):
    def test_dispatch_and_blank(self):
        self.assertEqual(parse_line("  " + ACCESS + "\n")["kind"], "access")
        self.assertEqual(parse_line(APP)["kind"], "app")
        self.assertIsNone(parse_line("   \n"))

    def test_empty_input(self):
        result = parse_lines([])
        self.assertEqual(result.records, [])
        self.assertEqual(result.rejected, 0)
        self.assertEqual(result.kinds, {})
        self.assertEqual(result.levels, {})

    def test_counts_and_order(self):
        lines = [APP, "junk", ACCESS, "", ACCESS, APP, APP]
        result = parse_lines(iter(lines))
        self.assertEqual([r["kind"] for r in result.records], ["app", "access", "access", "app", "app"])
        self.assertEqual(result.rejected, 2)
        self.assertEqual(list(result.kinds.items()), [("access", 2), ("app", 3)])
        self.assertEqual(list(result.levels.items()), [("ERROR", 3), ("INFO", 2)])
        self.assertIn("records=5", repr(result))

    def test_chunk_size_does_not_change_results(self):
        lines = [APP, "junk", ACCESS, "", ACCESS, APP, APP] * 5
        old = parse.CHUNK_SIZE
        try:
            outputs = []
            for size in (1, 2, 3, 7, 64, 4096):
                parse.CHUNK_SIZE = size
                r = parse_lines(lines)
                outputs.append((r.records, r.rejected, list(r.kinds.items()), list(r.levels.items())))
        finally:
            parse.CHUNK_SIZE = old
        for out in outputs[1:]:
            self.assertEqual(out, outputs[0])


if __name__ == "__main__":
    unittest.main()
