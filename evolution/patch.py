"""Patches between trees: unified diffs made with difflib, applied strictly.

A candidate is a patch against its parent; a version is its parent plus a patch.  The
applier is strict (every context and removed line must match, at the line the hunk
names) because a patch that applies "nearly" would give a tree whose hash nobody proved.

Why not a library to apply: whatthepatch (tried first) splits multi-file diffs on any
line starting with ``--- ``, so a removed line whose text starts with ``-- `` is read as
the next file's header.  The parser below follows the hunk line counts instead, which is
what ``patch(1)`` does.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from evolution.errors import PatchError
from evolution.tree import Tree, normalise_path

DEV_NULL = "/dev/null"
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


@dataclass
class Hunk:
    old_start: int
    old_len: int
    new_start: int
    new_len: int
    lines: list[str] = field(default_factory=list)  # each starts with ' ', '-' or '+'


@dataclass
class FileDiff:
    old_path: str | None
    new_path: str | None
    hunks: list[Hunk] = field(default_factory=list)

    @property
    def path(self) -> str:
        target = self.new_path if self.new_path is not None else self.old_path
        assert target is not None
        return target


def make_patch(old: Mapping[str, str], new: Mapping[str, str]) -> str:
    """A multi-file unified diff turning ``old`` into ``new`` (files added, changed, removed)."""
    chunks: list[str] = []
    for path in sorted(set(old) | set(new)):
        before = old.get(path)
        after = new.get(path)
        if before == after:
            continue
        from_name = f"a/{path}" if before is not None else DEV_NULL
        to_name = f"b/{path}" if after is not None else DEV_NULL
        chunks.append(
            "".join(
                difflib.unified_diff(
                    _lines(before or ""), _lines(after or ""), from_name, to_name, n=3
                )
            )
        )
    return "".join(chunks)


def parse_patch(patch: str) -> list[FileDiff]:
    """Split a unified diff into files and hunks, following hunk counts."""
    lines = patch.splitlines()
    files: list[FileDiff] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            current = FileDiff(_path(line[4:]), _path(lines[i + 1][4:]))
            if current.old_path is None and current.new_path is None:
                raise PatchError(
                    f"patch line {i + 1} names no file",
                    hint="pass a unified diff with ---/+++ headers",
                )
            files.append(current)
            i += 2
            while i < len(lines) and lines[i].startswith("@@"):
                i = _read_hunk(lines, i, current)
            continue
        if line.startswith("@@"):
            raise PatchError(
                f"patch line {i + 1} has a hunk without a file header",
                hint="pass a unified diff with ---/+++ headers",
            )
        i += 1  # preamble such as "diff --git" or "index" lines
    if not files and patch.strip():
        raise PatchError(
            "patch contains no file diffs", hint="pass a unified diff with ---/+++ headers"
        )
    return files


def apply_patch(tree: Mapping[str, str], patch: str) -> Tree:
    """Apply ``patch`` to ``tree`` and return the new tree; raise :class:`PatchError` naming the file and hunk."""
    result: Tree = dict(tree)
    for diff in parse_patch(patch):
        if diff.old_path is None:
            if diff.path in result:
                raise PatchError(
                    f"patch creates {diff.path}, which already exists",
                    hint="rebase the patch on the current version",
                )
            source: list[str] = []
        else:
            if diff.old_path not in result:
                raise PatchError(
                    f"patch changes {diff.old_path}, which is not in the version",
                    hint="check the parent version of the patch",
                )
            source = result[diff.old_path].splitlines()
        patched = _apply_file(diff, source)
        if diff.old_path is not None:
            del result[diff.old_path]
        if diff.new_path is not None:
            result[diff.new_path] = "".join(line + "\n" for line in patched)
    return result


def touched_files(patch: str) -> list[str]:
    """The paths a patch changes, creates or removes, sorted."""
    paths: set[str] = set()
    for diff in parse_patch(patch):
        paths.update(p for p in (diff.old_path, diff.new_path) if p is not None)
    return sorted(paths)


def patch_size(patch: str) -> int:
    """Lines added plus lines removed: the size the governor's risk policy weighs."""
    return sum(
        1 for d in parse_patch(patch) for h in d.hunks for line in h.lines if line[:1] in "+-"
    )


def _read_hunk(lines: list[str], i: int, current: FileDiff) -> int:
    match = _HUNK.match(lines[i])
    if match is None:
        raise PatchError(
            f"patch line {i + 1} is not a hunk header: {lines[i]!r}", hint="regenerate the patch"
        )
    old_start, old_len, new_start, new_len = (
        int(match.group(1)),
        int(match.group(2) if match.group(2) is not None else 1),
        int(match.group(3)),
        int(match.group(4) if match.group(4) is not None else 1),
    )
    hunk = Hunk(old_start, old_len, new_start, new_len)
    i += 1
    seen_old = seen_new = 0
    while seen_old < old_len or seen_new < new_len:
        if i >= len(lines):
            raise PatchError(
                f"patch for {current.path} ends inside a hunk",
                hint="the patch was truncated; regenerate it",
            )
        line = lines[i]
        if line.startswith("\\"):  # "\ No newline at end of file"
            i += 1
            continue
        tag = line[:1] or " "
        if tag not in " -+":
            raise PatchError(
                f"patch line {i + 1} in {current.path} is not a diff line: {line!r}",
                hint="regenerate the patch",
            )
        if tag in " -":
            seen_old += 1
        if tag in " +":
            seen_new += 1
        hunk.lines.append(tag + line[1:])
        i += 1
    while i < len(lines) and lines[i].startswith("\\"):
        i += 1
    current.hunks.append(hunk)
    return i


def _apply_file(diff: FileDiff, source: list[str]) -> list[str]:
    out: list[str] = []
    cursor = 0  # index into source of the next line not yet copied
    for number, hunk in enumerate(diff.hunks, start=1):
        start = hunk.old_start - 1 if hunk.old_len else hunk.old_start
        if start < cursor or start > len(source):
            raise PatchError(
                f"hunk #{number} of {diff.path} starts at line {hunk.old_start}, outside the file",
                hint="rebase the patch on the current version",
            )
        out.extend(source[cursor:start])
        cursor = start
        for line in hunk.lines:
            tag, text = line[0], line[1:]
            if tag == "+":
                out.append(text)
                continue
            if cursor >= len(source) or source[cursor] != text:
                found = source[cursor] if cursor < len(source) else "<end of file>"
                raise PatchError(
                    f"hunk #{number} of {diff.path} does not apply at line {cursor + 1}: expected {text!r}, found {found!r}",
                    hint="rebase the patch on the current version",
                )
            if tag == " ":
                out.append(text)
            cursor += 1
    out.extend(source[cursor:])
    return out


def _lines(text: str) -> list[str]:
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    return lines


def _path(raw: str) -> str | None:
    raw = raw.split("\t", 1)[0].strip()
    if raw == DEV_NULL:
        return None
    if raw.startswith(("a/", "b/")):
        raw = raw[2:]
    try:
        return normalise_path(raw)
    except ValueError as exc:
        raise PatchError(
            f"patch names an unsafe path {raw!r}",
            hint="patches may only touch files inside the genome",
        ) from exc
