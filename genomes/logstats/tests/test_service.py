import unittest

from logstats.report import render_report, summarise
from logstats.service import find, report

from tests.fixtures import SAMPLE


class ServiceTests(unittest.TestCase):
    def test_report_is_the_rendered_summary(self):
        self.assertEqual(report(SAMPLE, top=3), render_report(summarise(SAMPLE, top=3)))

    def test_find(self):
        found = find(SAMPLE, ["deadlock"])
        self.assertEqual([hit["message"] for hit in found], ["deadlock detected, connection refused"])
        self.assertEqual(found[0]["level"], "ERROR")
        self.assertEqual(find(SAMPLE, ["timeout", "payment"], mode="all")[0]["message"],
                         "payment failed: upstream timeout")
        self.assertEqual(find([], ["x"]), [])
