"""The mutators' findings over the shipped genomes, pinned: a refactor of the scans changes none.

Each mutator's ``find()`` walks a parsed module in its own way; the list below is what
they returned over ``genomes/logstats`` before their common loop was merged into
:class:`~evolution.mutators.base.CstMutator`.  The same list, in the same order, with the
same evidence, weights and rewritten code (digested, for both shipped genomes), proves
that merging the loops changed no opportunity and no patch.  A deliberate change to a
mutator updates these pins in the same commit, with the reason.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from evolution.mutators import ALL_MUTATORS
from evolution.mutators.base import CstMutator, Finding
from evolution.mutators.cst_tools import index
from runtime.genome_files import load_genome

GENOMES = Path(__file__).resolve().parent.parent / "genomes"

#: (mutator, file, function, line) of every finding over genomes/logstats, in find() order
LOGSTATS = [
    # session 18: bench.py reads a campaign's input (input_file, input_lines): its lines moved
    ("local_alias", "bench.py", "make_path", 65),
    ("local_alias", "bench.py", "make_lines", 78),
    ("local_alias", "bench.py", "make_lines", 80),
    ("local_alias", "bench.py", "make_lines", 81),
    ("local_alias", "bench.py", "make_lines", 85),
    ("local_alias", "bench.py", "make_lines", 91),
    ("local_alias", "bench.py", "input_lines", 141),
    ("local_alias", "bench.py", "input_lines", 143),
    ("local_alias", "bench.py", "main", 163),
    ("hoist_invariant", "logstats/aggregate.py", "latency_histogram", 55),
    ("local_alias", "logstats/aggregate.py", "status_counts", 17),
    ("local_alias", "logstats/aggregate.py", "path_latency", 36),
    ("local_alias", "logstats/aggregate.py", "top_clients", 68),
    ("local_alias", "logstats/aggregate.py", "error_rate_per_minute", 76),
    ("local_alias", "logstats/aggregate.py", "error_rate_per_minute", 88),
    ("local_alias", "logstats/aggregate.py", "find_spikes", 107),
    ("local_alias", "logstats/aggregate.py", "find_spikes", 108),
    ("min_max_sorted", "logstats/aggregate.py", "path_latency", 41),
    ("min_max_sorted", "logstats/aggregate.py", "path_latency", 41),
    ("min_max_sorted", "logstats/aggregate.py", "top_n", 61),
    ("min_max_sorted", "logstats/aggregate.py", "find_spikes", 105),
    ("set_membership", "logstats/normalise.py", "classify_agent", 81),
    ("set_membership", "logstats/normalise.py", "classify_agent", 86),
    ("hoist_invariant", "logstats/normalise.py", "drop_noise", 131),
    ("precompile_regex", "logstats/normalise.py", "classify_agent", 79),
    ("memoize", "logstats/normalise.py", "normalise_path", 38),
    ("memoize", "logstats/normalise.py", "classify_agent", 75),
    ("memoize", "logstats/normalise.py", "is_static", 95),
    ("memoize", "logstats/normalise.py", "normalise_level", 103),
    ("local_alias", "logstats/normalise.py", "normalise_path", 50),
    ("local_alias", "logstats/normalise.py", "normalise_path", 71),
    ("local_alias", "logstats/normalise.py", "normalise_records", 123),
    ("local_alias", "logstats/normalise.py", "drop_noise", 132),
    ("comprehension", "logstats/normalise.py", "normalise_records", 121),
    ("comprehension", "logstats/normalise.py", "drop_noise", 129),
    ("precompile_regex", "logstats/parse.py", "parse_access_line", 46),
    ("precompile_regex", "logstats/parse.py", "parse_app_line", 77),
    ("precompile_regex", "logstats/parse.py", "parse_app_line", 81),
    ("precompile_regex", "logstats/parse.py", "parse_line", 114),
    ("memoize", "logstats/parse.py", "level_for_status", 37),
    ("local_alias", "logstats/parse.py", "_parse_chunk", 131),
    ("local_alias", "logstats/parse.py", "_parse_chunk", 132),
    ("local_alias", "logstats/parse.py", "_parse_chunk", 134),
    ("join_concat", "logstats/report.py", "render_paths", 72),
    ("join_concat", "logstats/report.py", "render_minutes", 82),
    ("memoize", "logstats/report.py", "_fmt", 44),
    ("local_alias", "logstats/report.py", "bucket_rows", 59),
    ("set_membership", "logstats/search.py", "tokenize", 23),
    ("precompile_regex", "logstats/search.py", "tokenize", 20),
    ("local_alias", "logstats/search.py", "tokenize", 24),
    ("local_alias", "logstats/search.py", "term_frequencies", 32),
    ("local_alias", "logstats/search.py", "search", 47),
    ("comprehension", "logstats/search.py", "tokenize", 21),
    ("any_all_generator", "logstats/search.py", "search", 43),
    ("any_all_generator", "logstats/search.py", "search", 45),
    (
        "local_alias",
        "tests/test_parse.py",
        "ParseLinesTests.test_chunk_size_does_not_change_results",
        105,
    ),
    (
        "local_alias",
        "tests/test_parse.py",
        "ParseLinesTests.test_chunk_size_does_not_change_results",
        109,
    ),
]

#: (findings, sha256 of every finding's site and rewritten module) per shipped genome
DIGESTS = {
    "logstats": (57, "63286b47e29c7f813c2e6aa0f318c877713174d1a4f787eabd3d15661f927219"),
    "textindex": (25, "0646a063e2293f6fa1eb2d468fb786f219fd41b519b6212993a9b607c8329c33"),
}


#: the rewrites the pins above were taken with; later ones are pinned in NEW_FINDINGS below
FIRST_NINE = frozenset(
    {
        "set_membership",
        "hoist_invariant",
        "join_concat",
        "precompile_regex",
        "memoize",
        "local_alias",
        "min_max_sorted",
        "comprehension",
        "any_all_generator",
    }
)


def _findings(
    name: str, kinds: frozenset[str] = FIRST_NINE
) -> list[tuple[str, str, CstMutator, Finding]]:
    _, tree = load_genome(GENOMES / name)
    out: list[tuple[str, str, CstMutator, Finding]] = []
    for path, source in sorted(tree.items()):
        idx = index(source) if path.endswith(".py") else None
        if idx is None:
            continue
        for mutator in ALL_MUTATORS:
            assert isinstance(mutator, CstMutator)
            if mutator.name in kinds:
                out.extend((path, source, mutator, f) for f in mutator.find(idx, path))
    return out


def test_logstats_findings_are_pinned() -> None:
    found = [
        (mutator.name, path, finding.site.function, finding.site.line)
        for path, _, mutator, finding in _findings("logstats")
    ]
    assert found == LOGSTATS


def _digest(name: str, kinds: frozenset[str]) -> tuple[int, str]:
    digest = hashlib.sha256()
    count = 0
    for _, source, _, finding in _findings(name, kinds):
        site = finding.site
        edit = finding.edit()
        idx = index(source)
        assert idx is not None
        text = edit.run(idx.module, idx) if edit is not None else ""
        digest.update(
            repr(
                (site.file, site.function, site.line, site.kind, site.detail, site.weight)
            ).encode()
        )
        digest.update(text.encode())
        count += 1
    return count, digest.hexdigest()


@pytest.mark.parametrize("name", sorted(DIGESTS))
def test_sites_and_rewrites_are_pinned(name: str) -> None:
    assert _digest(name, FIRST_NINE) == DIGESTS[name]


#: the later rewrites' findings in the manifest sources (the code a genome evolves) of
#: every shipped genome: (mutator, file, function, line), in find() order
NEW_FINDINGS: dict[str, list[tuple[str, str, str, int]]] = {
    "logstats": [
        ("alias_data", "logstats/aggregate.py", "latency_histogram", 51),
        ("alias_data", "logstats/aggregate.py", "find_spikes", 99),
        ("min_max_pair", "logstats/aggregate.py", "percentile", 26),
        ("alias_data", "logstats/normalise.py", "classify_agent", 80),
        ("alias_data", "logstats/normalise.py", "classify_agent", 85),
        ("alias_data", "logstats/normalise.py", "drop_noise", 130),
        ("inline_body", "logstats/normalise.py", "normalise_record", 115),
        ("alias_data", "logstats/parse.py", "parse_app_line", 81),
        ("add_slots", "logstats/parse.py", "ParseResult.__init__", 26),
        ("alias_data", "logstats/report.py", "bucket_rows", 56),
        ("alias_data", "logstats/search.py", "tokenize", 22),
        ("inline_body", "logstats/search.py", "search", 41),
    ],
    "seqdiff": [
        ("genexpr_forms", "seqdiff/difflib.py", "SequenceMatcher.ratio", 619),
        ("genexpr_forms", "seqdiff/difflib.py", "_keep_original_ws", 717),
        ("inline_call", "seqdiff/difflib.py", "SequenceMatcher.ratio", 620),
        ("inline_call", "seqdiff/difflib.py", "get_close_matches", 704),
        ("alias_data", "seqdiff/difflib.py", "SequenceMatcher.__chain_b", 299),
        ("alias_data", "seqdiff/difflib.py", "_check_types", 1269),
        ("dunder_operator", "seqdiff/difflib.py", "SequenceMatcher.quick_ratio", 640),
        ("min_max_pair", "seqdiff/difflib.py", "SequenceMatcher.real_quick_ratio", 661),
        ("inline_method", "seqdiff/difflib.py", "get_close_matches", 703),
        ("inline_method", "seqdiff/difflib.py", "Differ._fancy_replace", 930),
    ],
    "shellsplit": [
        ("genexpr_forms", "shellsplit/shlex.py", "join", 320),
        ("inline_property", "shellsplit/shlex.py", "shlex.read_token", 137),
        ("chain_alias", "shellsplit/shlex.py", "shlex.read_token", 146),
    ],
    "textindex": [
        ("alias_data", "textindex/index.py", "Index.add", 21),
        ("add_slots", "textindex/index.py", "Index.__init__", 6),
        ("alias_data", "textindex/query.py", "matching", 21),
        ("alias_data", "textindex/query.py", "rank", 34),
        ("inline_body", "textindex/query.py", "search", 48),
        ("alias_data", "textindex/snippet.py", "snippet", 15),
        ("alias_data", "textindex/snippet.py", "snippet", 21),
        ("alias_data", "textindex/tokenize.py", "stem", 21),
    ],
    "tomlparse": [
        ("inline_call", "tomlparse/_parser.py", "parse_hex_char", 507),
        ("alias_data", "tomlparse/_parser.py", "NestedDict.get_or_create_nest", 205),
        ("inline_body", "tomlparse/_parser.py", "loads", 84),
        ("inline_body", "tomlparse/_parser.py", "parse_key_part", 401),
        ("inline_body", "tomlparse/_parser.py", "parse_key_part", 403),
        ("add_slots", "tomlparse/_parser.py", "Flags.__init__", 135),
        ("add_slots", "tomlparse/_parser.py", "NestedDict.__init__", 193),
        ("inline_method", "tomlparse/_parser.py", "parse_inline_table", 450),
        ("inline_method", "tomlparse/_parser.py", "parse_inline_table", 463),
    ],
}
#: (findings, sha256) of the later rewrites over each whole genome, sources, tests and bench
#: (session 17: every genome's bench.py reads TARS_BENCH_SCALE for the short count, which
#: moved their bench.py findings; seqdiff's gained one there; session 18: the three
#: real-code genomes' bench.py run the measured work PASSES times, which moved them again,
#: and chain_alias found shlex's state chain; logstats' bench.py reads a campaign's input
#: file, one more finding there; session 19: inline_method's receivers of known class,
#: two in seqdiff and two in tomlparse, and inline_call binds a conditionally read argument
#: first, which rewrites seqdiff's _calculate_ratio candidate differently)
NEW_DIGESTS: dict[str, tuple[int, str]] = {
    "logstats": (16, "c9f5c104425ee03e075f3ba0522619094927376bc30bb7945796c833ecece915"),
    "seqdiff": (18, "291f5acc163d0369004fd40ad5fef60617edf48fba4e305a5e5c91b48e015dc1"),
    "shellsplit": (9, "44c0c460004ebfc31bbdfcf71cfa01c137fb61852ddddfcca10bf930113f6c19"),
    "textindex": (14, "d256067aefc25d8a6ef244bdb4d418961725dd29f96845d08c62d39e35047139"),
    "tomlparse": (19, "13f54a16d37e36e24f6e1bc5f0090c58f192d29ce4626095ae438509e46b37d0"),
}
NEW_KINDS = frozenset(m.name for m in ALL_MUTATORS) - FIRST_NINE


@pytest.mark.parametrize("name", sorted(NEW_FINDINGS))
def test_new_rewrites_findings_are_pinned(name: str) -> None:
    manifest, _ = load_genome(GENOMES / name)
    found = [
        (mutator.name, path, finding.site.function, finding.site.line)
        for path, _, mutator, finding in _findings(name, NEW_KINDS)
        if manifest.is_source(path)
    ]
    assert found == NEW_FINDINGS[name]


@pytest.mark.parametrize("name", sorted(NEW_DIGESTS))
def test_new_rewrites_are_pinned(name: str) -> None:
    assert _digest(name, NEW_KINDS) == NEW_DIGESTS[name]
