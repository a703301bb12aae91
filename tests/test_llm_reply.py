"""Replies parsed strictly: blocks that apply exactly once to a source file, or a reason."""

from __future__ import annotations

import pytest
from llmkit import GOOD_TINY_REPLY, TINY_SEARCH, search_replace

from evolution.errors import ReplyError
from evolution.llm_reply import Block, apply_blocks, parse_blocks
from evolution.manifest import parse_manifest

MANIFEST = parse_manifest(
    """
[genome]
name = "g"
sources = ["pkg/*.py"]
held_out = ["pkg/secret_check.py"]
[commands]
test = "python -m unittest"
bench = "python bench.py"
held_out = "python -m unittest pkg.secret_check"
[fitness]
metric = "seconds"
direction = "minimize"
"""
)
SOURCE = "def f(xs):\n    out = 0\n    for x in xs:\n        out += x\n    for x in xs:\n        out += x\n    return out\n"
TREE = {
    "pkg/core.py": SOURCE,
    "pkg/secret_check.py": "assert True\n",
    "tests/test_core.py": "import pkg.core\n",
    "genome.toml": "",
}


def test_a_fenced_block_with_prose_around_it_parses() -> None:
    blocks = parse_blocks(GOOD_TINY_REPLY)
    assert blocks == [Block("tiny/core.py", TINY_SEARCH, blocks[0].replace)]
    assert blocks[0].replace.startswith("COMMON_SET = frozenset(COMMON)\n")


def test_a_good_block_applies() -> None:
    reply = search_replace("pkg/core.py", "    out = 0\n", "    out = 0  # sum\n")
    assert apply_blocks(TREE, MANIFEST, parse_blocks(reply)) == {
        "pkg/core.py": SOURCE.replace("    out = 0\n", "    out = 0  # sum\n")
    }


def test_a_leading_dot_slash_names_the_same_file() -> None:
    reply = search_replace("./pkg/core.py", "    out = 0\n", "    out = 0  # sum\n")
    assert list(apply_blocks(TREE, MANIFEST, parse_blocks(reply))) == ["pkg/core.py"]


def test_two_blocks_apply_in_order() -> None:
    reply = search_replace("pkg/core.py", "    out = 0\n", "    total = 0\n") + search_replace(
        "pkg/core.py", "    return out\n", "    return out + total\n"
    )
    new = apply_blocks(TREE, MANIFEST, parse_blocks(reply))["pkg/core.py"]
    assert "total = 0" in new and "return out + total" in new


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("I think it is fine as it is.", "no SEARCH/REPLACE block"),
        ("pkg/core.py\n<<<<<<< SEARCH\n    out = 0\n>>>>>>> REPLACE\n", "no '=======' line"),
        (
            "pkg/core.py\n<<<<<<< SEARCH\n    out = 0\n=======\n    out = 1\n",
            "no '>>>>>>> REPLACE'",
        ),
        ("<<<<<<< SEARCH\n    out = 0\n=======\n    out = 1\n>>>>>>> REPLACE\n", "no file path"),
        ("text\n=======\n", "outside a SEARCH/REPLACE block"),
    ],
)
def test_malformed_replies_are_refused_with_the_reason(reply: str, reason: str) -> None:
    with pytest.raises(ReplyError, match=reason):
        parse_blocks(reply)


@pytest.mark.parametrize(
    ("path", "search", "replace", "reason"),
    [
        ("pkg/core.py", "    out = 1\n", "    out = 2\n", "matches 0 times, not exactly once"),
        ("pkg/core.py", "        out += x\n", "        out -= x\n", "matches 2 times"),
        ("pkg/core.py", "\tout = 0\n", "\tout = 1\n", "matches 0 times"),  # whitespace counts
        ("tests/test_core.py", "import pkg.core\n", "", "not a source file"),
        ("pkg/secret_check.py", "assert True\n", "pass\n", "not a source file"),
        ("genome.toml", "x\n", "y\n", "not a source file"),
        ("pkg/other.py", "x\n", "y\n", "no such file"),
        ("pkg/core.py", "    return out\n", "    return (out\n", "does not parse as Python"),
        ("pkg/core.py", "    out = 0\n", "    out = 0\n", "change nothing"),
        ("pkg/core.py", "\n", "x\n", "SEARCH section is empty"),
    ],
)
def test_blocks_that_do_not_apply_say_why(
    path: str, search: str, replace: str, reason: str
) -> None:
    with pytest.raises(ReplyError, match=reason):
        apply_blocks(TREE, MANIFEST, parse_blocks(search_replace(path, search, replace)))
