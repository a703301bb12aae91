"""Near-duplicate candidates: the same program written twice gets one key."""

from __future__ import annotations

import textwrap

from evolution.novelty import already_judged, normal_form, tree_key

PARENT = textwrap.dedent(
    """
    def total(rows, bounds):
        out = 0
        for r in rows:
            out += len(sorted(bounds)) * r
        return out
    """
)

HOIST_1 = textwrap.dedent(
    """
    def total(rows, bounds):
        out = 0
        _hoisted_1 = len(sorted(bounds))
        for r in rows:
            out += _hoisted_1 * r
        return out
    """
)

# the same program: another helper name, a comment, other spacing
HOIST_2 = textwrap.dedent(
    """
    def total(rows, bounds):
        out = 0
        _hoisted_2 = len( sorted(bounds) )  # once
        for r in rows:
            out += _hoisted_2 * r

        return out
    """
)

# a different program: the helper multiplies the other way round
OTHER = HOIST_1.replace("_hoisted_1 * r", "r * _hoisted_1")


def test_layout_comments_and_fresh_names_do_not_matter() -> None:
    parent = {"pkg/m.py": PARENT, "README": "x"}
    one = tree_key({"pkg/m.py": HOIST_1, "README": "x"}, parent)
    two = tree_key({"pkg/m.py": HOIST_2, "README": "x"}, parent)
    assert one == two
    assert one != tree_key({"pkg/m.py": OTHER, "README": "x"}, parent)
    assert one != tree_key({"pkg/m.py": HOIST_1, "README": "y"}, parent)
    assert one != tree_key(parent, parent)


def test_names_the_parent_knows_are_kept() -> None:
    # renaming a parameter the parent has is a real change (callers pass it by keyword)
    renamed = PARENT.replace("bounds", "limits")
    assert normal_form(renamed, PARENT) != normal_form(PARENT, PARENT)
    assert normal_form(PARENT) == normal_form("\n\n" + PARENT)


def test_a_file_that_does_not_parse_is_its_text() -> None:
    assert normal_form("def (:", PARENT) == "def (:"


def test_already_judged() -> None:
    key = tree_key({"pkg/m.py": HOIST_1}, {"pkg/m.py": PARENT})
    judged = {tree_key({"pkg/m.py": HOIST_2}, {"pkg/m.py": PARENT})}
    assert already_judged(key, judged)
    assert already_judged(key, list(judged))
    assert not already_judged(key, set())


def test_a_builtin_the_candidate_starts_reading_is_a_real_difference() -> None:
    parent = {"pkg/m.py": PARENT}
    as_set = HOIST_1.replace("len(sorted(bounds))", "len(set(bounds))")
    as_frozenset = HOIST_2.replace("len( sorted(bounds) )", "len(frozenset(bounds))")
    assert as_set != HOIST_1 and as_frozenset != HOIST_2
    assert tree_key({"pkg/m.py": as_set}, parent) != tree_key({"pkg/m.py": as_frozenset}, parent)
    same = as_set.replace("_hoisted_1", "_h")
    assert tree_key({"pkg/m.py": as_set}, parent) == tree_key({"pkg/m.py": same}, parent)
