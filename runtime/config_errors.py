"""Every problem in cluster.yml as one :class:`ConfigError`: file, line, key path and the fix.

The YAML node tree is kept beside the parsed data only so that an error found in the
data can be pointed at the line it came from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import yaml
from pydantic import BaseModel, ValidationError

from evolution.errors import ConfigError

_KEY_FIXES = {
    "id": "use lowercase letters, digits and '-', starting with a letter or digit (node-1)",
    "host": "write a host name or an IP address such as 127.0.0.1",
    "port": "use a free TCP port between 1 and 65535",
    "public_key": "paste the line `tars keys` prints for the node, or remove the key to read <keys>/<id>.key",
    "timers": "for example {election_min: 0.15, election_max: 0.30, heartbeat: 0.03}",
    "compaction": "for example {after: 10000, keep: 1000}",
    "nodes": "list at least one node with id, host and port",
    "llm": "see docs/llm.md for the llm: section (models, a budget, timeouts)",
    "endpoint": "write the OpenAI-compatible base URL, such as http://127.0.0.1:11434/v1",
    "api_key_env": "write the NAME of an environment variable; the key itself is never in a file",
}

_TYPE_FIXES = {
    "missing": "add it",
    "literal_error": "use one of the allowed values",
    "int_type": "write a whole number",
    "int_parsing": "write a whole number",
    "float_parsing": "write a number",
}


def key_path(loc: Sequence[str | int]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def line_of(root: yaml.Node | None, loc: Sequence[str | int]) -> int | None:
    """The 1-based line of the deepest part of ``loc`` present in the YAML (a missing key: its parent's)."""
    if root is None or not loc:
        return None
    node: yaml.Node = root
    line: int | None = None
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            for key, value in node.value:
                if getattr(key, "value", None) == part:
                    node, line = value, key.start_mark.line + 1
                    break
            else:
                return line
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def config_error(
    source: str, root: yaml.Node | None, loc: Sequence[str | int], message: str, hint: str
) -> ConfigError:
    line = line_of(root, loc)
    where = f"{source}:{line}" if line is not None else source
    return ConfigError(f"{where}: {key_path(loc)}: {message}", hint=hint)


def from_validation(
    source: str,
    root: yaml.Node | None,
    exc: ValidationError,
    sections: Mapping[tuple[str, ...], type[BaseModel]],
) -> ConfigError:
    """pydantic's first complaint, as one line naming file, line, key path and fix."""
    errors = exc.errors()
    # A misspelt key also makes the real one "missing": the unknown key is the better clue.
    first = next((error for error in errors if error["type"] == "extra_forbidden"), errors[0])
    loc: tuple[str | int, ...] = tuple(first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        section = tuple(part for part in loc[:-1] if isinstance(part, str))
        model = sections.get(section)
        allowed = ", ".join(model.model_fields) if model else ""
        fix = (
            f"remove it or check its spelling (allowed here: {allowed})" if allowed else "remove it"
        )
        return config_error(source, root, loc, f"unknown key {loc[-1]!r}", fix)
    named = next((part for part in reversed(loc) if isinstance(part, str)), "")
    fix = _KEY_FIXES.get(named) or _TYPE_FIXES.get(first["type"]) or "see docs/cluster.md"
    if first["type"] == "missing":
        fix = "add it"
    return config_error(source, root, loc, message, fix)
