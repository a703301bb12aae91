"""The prompt a model is asked: built from what the node knows, bounded, never a protected file.

Pure: the tree, the manifest, the opportunity and the lineage's attempts come in; chat
messages (OpenAI's ``role``/``content`` dicts) go out.  What is shown is chosen so the
model can do what the offline rewrites cannot, and no more:

- the one function to speed up, extracted with ``ast`` from a file the manifest lets
  evolve (a held-out file or any non-source file is refused before a byte of it is read);
- the analyzer's evidence (profile share, loop depth, the site it found);
- the genome's description;
- the lineage's recent successes and failures with their reasons, and the rewrites
  already tried on this function, each cut to a bounded length, so the model does not
  repeat what lost and the prompt does not grow with history.

The same inputs give the same messages byte for byte, which is what makes the reply
cache (keyed by a hash of model and messages) pay off on a replay.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from evolution.errors import LLMError
from evolution.manifest import Manifest

#: bounds on what history adds to a prompt
MAX_ATTEMPTS = 8
MAX_REASON = 240
MAX_FUNCTION_LINES = 300

Message = dict[str, str]

SYSTEM = (
    "You optimise Python code for speed. You change only the code you are shown, and the "
    "program's behaviour must stay identical: the same results, output, exceptions and side "
    "effects for every input, bit for bit for floats. Do not add imports of third-party "
    "packages. Do not touch tests.\n\n"
    "Answer with one or more SEARCH/REPLACE blocks and nothing else but a one-line "
    "explanation. Each block is: the file path alone on a line, then\n"
    "<<<<<<< SEARCH\n<the exact existing lines, whitespace included>\n=======\n"
    "<the new lines>\n>>>>>>> REPLACE\n"
    "The SEARCH text must match the file exactly once."
)

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? ")


@dataclass(frozen=True)
class Attempt:
    """One candidate the lineage already judged, as the log tells it."""

    parent: str
    mutator: str
    kind: str
    verdict: str
    reasons: tuple[str, ...]
    ratio: float | None
    patch: str


@dataclass(frozen=True)
class Target:
    """Where the model is asked to work, and why there."""

    file: str
    function: str
    line: int
    kind: str
    evidence: str


def function_span(source: str, qualname: str) -> tuple[int, int] | None:
    """First and last line (decorators included) of ``Class.method`` or ``function`` in ``source``."""
    try:
        body: list[ast.stmt] = ast.parse(source).body
    except (SyntaxError, ValueError):
        return None
    found: ast.stmt | None = None
    for part in qualname.split("."):
        found = next(
            (
                node
                for node in body
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                and node.name == part
            ),
            None,
        )
        if found is None:
            return None
        body = found.body
    assert found is not None
    decorators = getattr(found, "decorator_list", [])
    start = min([found.lineno, *(d.lineno for d in decorators)])
    return start, found.end_lineno or found.lineno


def shown_code(tree: Mapping[str, str], manifest: Manifest, target: Target) -> tuple[str, int]:
    """The code a model is shown for ``target`` and its first line; :class:`LLMError` for a protected file."""
    if (
        manifest.is_held_out(target.file)
        or not manifest.is_source(target.file)
        or not target.file.endswith(".py")
    ):
        raise LLMError(
            f"{target.file} is not a source file of {manifest.name}: never shown to a model",
            hint="only files matching genome.sources (and not held_out) are evolved",
        )
    if target.file not in tree:
        raise LLMError(f"{target.file} is not in the version", hint="re-run the analysis")
    source = tree[target.file]
    lines = source.splitlines()
    span = function_span(source, target.function) if target.function != "<module>" else None
    start, end = span if span else (1, len(lines))
    if end - start + 1 > MAX_FUNCTION_LINES:
        raise LLMError(
            f"{target.file}:{target.function} is {end - start + 1} lines, over the "
            f"{MAX_FUNCTION_LINES} a prompt shows",
            hint="the model is asked about functions, not whole large files",
        )
    return "\n".join(lines[start - 1 : end]) + "\n", start


def _touches(patch: str, file: str, span: tuple[int, int]) -> bool:
    """Whether ``patch`` changes lines of ``file`` inside ``span`` (old-side hunk ranges)."""
    inside = False
    for line in patch.splitlines():
        if line.startswith("+++ "):
            inside = line[4:].strip() in (f"b/{file}", file)
        elif inside and (match := _HUNK.match(line)):
            start = int(match.group(1))
            length = int(match.group(2)) if match.group(2) is not None else 1
            if start <= span[1] and start + max(length, 1) - 1 >= span[0]:
                return True
    return False


def _cut(text: str, limit: int = MAX_REASON) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _attempt_line(attempt: Attempt) -> str:
    ratio = f" {attempt.ratio:.3f}×" if attempt.ratio is not None else ""
    why = _cut("; ".join(attempt.reasons)) or "no reason recorded"
    return f"- {attempt.mutator} ({attempt.kind}): {attempt.verdict}{ratio} — {why}"


def history_text(attempts: Sequence[Attempt], version: str, target: Target, source: str) -> str:
    """The bounded account of what was tried: on this function now, then the lineage's latest."""
    span = function_span(source, target.function)
    here = [
        a
        for a in attempts
        if a.parent == version and span is not None and _touches(a.patch, target.file, span)
    ]
    recent = [a for a in attempts if a not in here]
    won = [a for a in recent if a.verdict == "adopt"][-MAX_ATTEMPTS:]
    lost = [a for a in recent if a.verdict != "adopt"][-MAX_ATTEMPTS:]
    parts: list[str] = []
    if here:
        parts.append("Already tried on this function (do not repeat them):")
        parts += [_attempt_line(a) for a in here[-MAX_ATTEMPTS:]]
    if won:
        parts.append("Recent changes that were adopted:")
        parts += [_attempt_line(a) for a in won]
    if lost:
        parts.append("Recent changes that failed, with the reasons:")
        parts += [_attempt_line(a) for a in lost]
    return "\n".join(parts)


def build_messages(
    tree: Mapping[str, str],
    manifest: Manifest,
    version: str,
    target: Target,
    attempts: Sequence[Attempt] = (),
) -> list[Message]:
    """System and user messages asking for SEARCH/REPLACE blocks on ``target``'s function."""
    code, first = shown_code(tree, manifest, target)
    described = manifest.genome.description or "(no description)"
    history = history_text(attempts, version, target, tree[target.file])
    user = [
        f"Program: {manifest.name} — {_cut(described, 400)}",
        f"File: {target.file}",
        f"Function: {target.function} (line {first})",
        f"Why here: {target.kind}: {_cut(target.evidence, 400)}",
        "",
        f"Code ({target.file}, from line {first}):",
        "```python",
        code.rstrip("\n"),
        "```",
    ]
    if history:
        user += ["", history]
    user += [
        "",
        f"Make {target.function} faster with identical behaviour. Reply with SEARCH/REPLACE "
        f"blocks against {target.file}.",
    ]
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n".join(user)}]


def with_error(messages: Sequence[Message], reply: str, error: str) -> list[Message]:
    """The conversation again, with the model's unusable reply and why it could not be used."""
    return [
        *messages,
        {"role": "assistant", "content": reply},
        {
            "role": "user",
            "content": f"Your reply could not be used: {_cut(error, 600)}\n"
            "Answer again with SEARCH/REPLACE blocks whose SEARCH text matches the file exactly.",
        },
    ]


def prompt_hash(model: str, messages: Sequence[Message]) -> str:
    """sha256 of the model and the messages: the reply cache's key and the request's name in records."""
    text = json.dumps([model, list(messages)], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()
