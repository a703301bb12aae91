"""A model's reply read into a prompt block's declared result type (pure).

``str`` is the text; ``Patch`` is the SEARCH/REPLACE blocks the generator reads
(docs/llm.md), counted; a record or union of the script's own is the reply's JSON (a
fenced ```json block or the first ``{...}``), held to the type by
:func:`evolution.lang.values.conform`.  A reply that does not fit raises
:class:`ReplyMismatch` saying why; the interpreter turns it into a ``ScriptError`` at the
prompt block.
"""

from __future__ import annotations

import json
import re
from typing import Any

from evolution.errors import TarsError
from evolution.lang.types import STR, Named, Ty, TypeTable
from evolution.lang.values import Mismatch, Rec, conform, rec

_FENCE = re.compile(r"```(?:json)?\s*\n(.*?)\n```", re.S)


class ReplyMismatch(Exception):
    """The reply cannot be read as the declared type; the message says why."""


def read_reply(text: str, ty: Ty, table: TypeTable) -> Any:
    """The reply as a value of ``ty``."""
    if ty == STR:
        return text
    if ty == Named("Patch"):
        return _patch(text)
    data = _json(text)
    try:
        return conform(data, ty, table)
    except Mismatch as exc:
        raise ReplyMismatch(f"the reply's JSON does not fit {ty}: {exc}") from None


def _patch(text: str) -> Rec:
    from evolution.llm_reply import parse_blocks

    try:
        blocks = parse_blocks(text)
    except TarsError as exc:
        raise ReplyMismatch(f"the reply is not a Patch: {exc.message}") from None
    files = sorted({b.path for b in blocks})
    lines = sum(b.replace.count("\n") + 1 for b in blocks)
    return rec("Patch", diff=text, files=files, lines=lines)


def _json(text: str) -> Any:
    fenced = _FENCE.search(text)
    body = fenced.group(1) if fenced else text
    if not fenced and "{" in text:
        body = text[text.index("{") : text.rindex("}") + 1]
    try:
        return json.loads(body)
    except ValueError as exc:
        raise ReplyMismatch(f"the reply holds no JSON object ({exc})") from None
