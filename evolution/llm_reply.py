"""A model's reply, parsed strictly: SEARCH/REPLACE blocks that apply exactly, or a reason.

A model's text is untrusted input.  Nothing is guessed: a block must name a file the
manifest lets evolve, its SEARCH text must occur exactly once in that file (byte for
byte, whitespace included), and every rewritten file must still parse as Python.  The
reason of a refusal is written for the model as much as for the log: the generator
appends it to the conversation and asks once more.

The format is Aider's (``<<<<<<< SEARCH`` / ``=======`` / ``>>>>>>> REPLACE``, the file's
path on the line before, optionally with a code fence between): models are trained on
it, and a search text carries its own context, so a reply does not depend on line
numbers a model cannot count.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from dataclasses import dataclass

from evolution.errors import ReplyError
from evolution.manifest import Manifest

_SEARCH = re.compile(r"^<{5,9} SEARCH\s*$")
_DIVIDER = re.compile(r"^={5,9}\s*$")
_REPLACE = re.compile(r"^>{5,9} REPLACE\s*$")
_FENCE = re.compile(r"^```[\w+-]*\s*$")
_PATH = re.compile(r"^[A-Za-z0-9_./-]+$")


@dataclass(frozen=True)
class Block:
    """One edit: in ``path``, the one occurrence of ``search`` becomes ``replace``."""

    path: str
    search: str
    replace: str


def parse_blocks(text: str) -> list[Block]:
    """Every SEARCH/REPLACE block of a reply, in order; :class:`ReplyError` if there is none or one is malformed."""
    lines = text.splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        if not _SEARCH.match(lines[index]):
            if _DIVIDER.match(lines[index]) or _REPLACE.match(lines[index]):
                raise ReplyError(
                    f"line {index + 1}: {lines[index].strip()!r} outside a SEARCH/REPLACE block",
                    hint="start each block with '<<<<<<< SEARCH'",
                )
            index += 1
            continue
        path = _path_before(lines, index, len(blocks) + 1)
        search, index = _section(lines, index + 1, _DIVIDER, "=======", len(blocks) + 1)
        replace, index = _section(lines, index, _REPLACE, ">>>>>>> REPLACE", len(blocks) + 1)
        blocks.append(Block(path, search, replace))
    if not blocks:
        raise ReplyError(
            "the reply has no SEARCH/REPLACE block",
            hint="answer with the file path, then <<<<<<< SEARCH, the exact lines, =======, "
            "the new lines, >>>>>>> REPLACE",
        )
    return blocks


def _path_before(lines: list[str], index: int, number: int) -> str:
    """The file path a block names: the line before its SEARCH marker, or before a code fence."""
    back = index - 1
    if back >= 0 and _FENCE.match(lines[back].strip()):
        back -= 1
    candidate = lines[back].strip().strip("`*") if back >= 0 else ""
    candidate = candidate.removeprefix("./")  # the same file, as shells and models write it
    if not candidate or not _PATH.match(candidate) or candidate.startswith("```"):
        raise ReplyError(
            f"block {number}: no file path on the line before '<<<<<<< SEARCH'",
            hint="put the file's path, alone on its line, right before each block",
        )
    return candidate


def _section(
    lines: list[str], start: int, end: re.Pattern[str], marker: str, number: int
) -> tuple[str, int]:
    """The text from ``start`` up to the line matching ``end``, and the index after that line."""
    for index in range(start, len(lines)):
        if _SEARCH.match(lines[index]):
            break
        if end.match(lines[index]):
            body = lines[start:index]
            return ("\n".join(body) + "\n" if body else ""), index + 1
    raise ReplyError(f"block {number}: no '{marker}' line", hint="close every block")


def apply_blocks(
    tree: Mapping[str, str], manifest: Manifest, blocks: list[Block]
) -> dict[str, str]:
    """The files the blocks rewrite (path → new text), applied in order; :class:`ReplyError` naming the first problem."""
    changed: dict[str, str] = {}
    for number, block in enumerate(blocks, start=1):
        where = f"block {number} ({block.path})"
        if not block.path.endswith(".py") or not manifest.is_source(block.path):
            raise ReplyError(
                f"{where}: {block.path} is not a source file this genome lets evolve",
                hint="edit only the source file shown; tests and other files are protected",
            )
        if block.path not in tree:
            raise ReplyError(f"{where}: no such file", hint="use the path exactly as shown")
        if not block.search.strip():
            raise ReplyError(
                f"{where}: the SEARCH section is empty",
                hint="copy the exact lines to replace into SEARCH",
            )
        text = changed.get(block.path, tree[block.path])
        found = text.count(block.search)
        if found != 1:
            raise ReplyError(
                f"{where}: the SEARCH text matches {found} times, not exactly once",
                hint="copy the lines exactly, whitespace included, with enough context to be unique",
            )
        changed[block.path] = text.replace(block.search, block.replace, 1)
    for path, text in changed.items():
        if text == tree[path]:
            raise ReplyError(f"{path}: the blocks change nothing", hint="propose a real change")
        try:
            ast.parse(text, filename=path)
        except SyntaxError as exc:
            raise ReplyError(
                f"{path}: the result does not parse as Python (line {exc.lineno}: {exc.msg})",
                hint="keep the indentation of the SEARCH lines in REPLACE",
            ) from exc
    return changed
