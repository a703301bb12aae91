"""Patches: made by difflib, applied strictly, round-trip on any edit."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evolution.errors import PatchError
from evolution.patch import apply_patch, make_patch, patch_size, touched_files
from evolution.tree import version_id

lines = st.lists(
    st.sampled_from(["a", "b", "-- x", "--- y", "+++ z", "@@ w", "", " sp", "\\ q"]), max_size=30
)


@given(lines, lines)
def test_round_trip_any_edit(old: list[str], new: list[str]) -> None:
    a = {"f.py": "".join(x + "\n" for x in old)}
    b = {"f.py": "".join(x + "\n" for x in new)}
    assert apply_patch(a, make_patch(a, b)) == b


def test_multi_file_add_change_remove() -> None:
    a = {"m.py": "x = 1\ny = 2\n", "gone.py": "bye\n"}
    b = {"m.py": "x = 1\ny = 3\n", "pkg/new.py": "hello\n"}
    patch = make_patch(a, b)
    assert apply_patch(a, patch) == b
    assert touched_files(patch) == ["gone.py", "m.py", "pkg/new.py"]
    assert patch_size(patch) == 4


def test_patch_that_does_not_apply_names_file_and_hunk() -> None:
    a = {"m.py": "x = 1\ny = 2\n"}
    patch = make_patch(a, {"m.py": "x = 1\ny = 3\n"})
    with pytest.raises(PatchError, match=r"hunk #1 of m.py does not apply"):
        apply_patch({"m.py": "x = 9\ny = 2\n"}, patch)


def test_patch_on_missing_file_and_garbage() -> None:
    patch = make_patch({"m.py": "a\n"}, {"m.py": "b\n"})
    with pytest.raises(PatchError, match="m.py, which is not in the version"):
        apply_patch({}, patch)
    with pytest.raises(PatchError, match="no file diffs"):
        apply_patch({"m.py": "a\n"}, "this is not a diff\n")
    with pytest.raises(PatchError, match="truncated"):
        apply_patch({"m.py": "a\n"}, patch.rsplit("\n", 2)[0] + "\n")


def test_unsafe_paths_are_refused() -> None:
    evil = "--- a/../../etc/passwd\n+++ b/../../etc/passwd\n@@ -1 +1 @@\n-root\n+evil\n"
    with pytest.raises(PatchError, match="unsafe path"):
        apply_patch({"x": "root\n"}, evil)


def test_version_id_is_order_independent_and_content_sensitive() -> None:
    assert version_id({"a": "1", "b": "2"}) == version_id({"b": "2", "a": "1"})
    assert version_id({"a": "1"}) != version_id({"a": "1 "})
    assert version_id({"ab": ""}) != version_id({"a": "b"})
