import unittest

from logstats.normalise import (
    classify_agent,
    drop_noise,
    is_static,
    normalise_level,
    normalise_path,
    normalise_record,
    normalise_records,
)


class PathTests(unittest.TestCase):
    def test_ids_query_and_case(self):
        self.assertEqual(normalise_path("/API/Users/42?x=1#frag"), "/api/users/:id")
        self.assertEqual(normalise_path("/api/orders/12/items/3"), "/api/orders/:id/items/:id")
        self.assertEqual(normalise_path("//a///b/./c/"), "/a/b/c")

    def test_uuid_hash_version_and_mostly_digits(self):
        self.assertEqual(normalise_path("/r/9f1c2d3e-4b5a-6789-abcd-ef0123456789"), "/r/:uuid")
        self.assertEqual(normalise_path("/static/js/app.3f9a2b7c1d.js"), "/static/js/app.:hash.js")
        self.assertEqual(normalise_path("/x/short.ab12.js"), "/x/short.ab12.js")
        self.assertEqual(normalise_path("/api/V02/x"), "/api/v2/x")
        self.assertEqual(normalise_path("/u/a123456"), "/u/:id")
        self.assertEqual(normalise_path("/u/abc1"), "/u/abc1")
        self.assertEqual(normalise_path("/deadbeefdeadbeef"), "/deadbeefdeadbeef")

    def test_dotdot_percent_and_params(self):
        self.assertEqual(normalise_path("/admin/../api/health"), "/api/health")
        self.assertEqual(normalise_path("/../x"), "/x")
        self.assertEqual(normalise_path("/docs/getting%20started"), "/docs/getting started")
        self.assertEqual(normalise_path("/caf%C3%A9/%C3%89T%C3%89"), "/café/été")
        self.assertEqual(normalise_path("/a;jsessionid=1/b"), "/a/b")

    def test_empty(self):
        self.assertEqual(normalise_path(""), "/")
        self.assertEqual(normalise_path("?q=1"), "/")


class AgentTests(unittest.TestCase):
    def test_kinds(self):
        self.assertEqual(classify_agent("Mozilla/5.0 (compatible; Googlebot/2.1)"), "bot")
        self.assertEqual(classify_agent("SomethingCrawler/1.0"), "bot")
        self.assertEqual(classify_agent("my-spider"), "bot")
        self.assertEqual(classify_agent("curl/8.4.0"), "cli")
        self.assertEqual(classify_agent("python-requests/2.31"), "cli")
        self.assertEqual(classify_agent("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1) Mobile/15E148"), "mobile")
        self.assertEqual(classify_agent("Mozilla/5.0 (X11; Linux x86_64) Firefox/121.0"), "browser")
        self.assertEqual(classify_agent("Thing/1.0"), "unknown")
        self.assertEqual(classify_agent(""), "unknown")
        self.assertEqual(classify_agent("-"), "unknown")

    def test_bot_wins_over_browser(self):
        self.assertEqual(classify_agent("Mozilla/5.0 AhrefsBot/7.0 Mobile"), "bot")


class RecordTests(unittest.TestCase):
    def test_is_static(self):
        self.assertTrue(is_static("/img/logo.PNG"))
        self.assertTrue(is_static("/static/app.:hash.js"))
        self.assertFalse(is_static("/api/users"))
        self.assertFalse(is_static("/v1.2/users"))
        self.assertFalse(is_static("/file.unknownext"))

    def test_levels(self):
        self.assertEqual(normalise_level("warning"), "WARN")
        self.assertEqual(normalise_level(" Fatal "), "ERROR")
        self.assertEqual(normalise_level("custom"), "CUSTOM")
        self.assertEqual(normalise_level(""), "INFO")
        self.assertEqual(normalise_level(None), "INFO")

    def test_normalise_record_does_not_mutate(self):
        rec = {"ts": "2023-10-10 13:55:36", "path": "/A/1?x", "agent": "curl/8", "level": "warn",
               "message": "  two   spaces\there "}
        before = dict(rec)
        out = normalise_record(rec)
        self.assertEqual(rec, before)
        self.assertEqual(out["path"], "/a/:id")
        self.assertEqual(out["raw_path"], "/A/1?x")
        self.assertEqual(out["agent_kind"], "cli")
        self.assertEqual(out["minute"], "2023-10-10 13:55")
        self.assertFalse(out["static"])
        self.assertEqual(out["level"], "WARN")
        self.assertEqual(out["message"], "two spaces here")

    def test_normalise_record_missing_fields(self):
        out = normalise_record({"ts": "2023-10-10 13:55:36", "path": "", "level": None})
        self.assertEqual(out["path"], "-")
        self.assertEqual(out["agent_kind"], "unknown")
        self.assertEqual(out["message"], "")

    def test_normalise_records_and_drop_noise(self):
        self.assertEqual(normalise_records([]), [])
        recs = normalise_records([
            {"ts": "2023-10-10 13:55:36", "path": "/a", "agent": "Googlebot/2.1", "level": "info"},
            {"ts": "2023-10-10 13:55:37", "path": "/b.css", "agent": "curl/8", "level": "info"},
            {"ts": "2023-10-10 13:55:38", "path": "/c", "agent": "curl/8", "level": "info"},
            {"ts": "2023-10-10 13:55:39", "path": "/d", "agent": "Mozilla/5.0 Firefox", "level": "info"},
        ])
        self.assertEqual([r["path"] for r in recs], ["/a", "/b.css", "/c", "/d"])
        self.assertEqual([r["path"] for r in drop_noise(recs)], ["/c", "/d"])
        self.assertEqual([r["path"] for r in drop_noise(recs, ignore_kinds=["cli", "browser"])], ["/a"])
        self.assertEqual(drop_noise([]), [])


if __name__ == "__main__":
    unittest.main()
