"""Writing one value into cluster.yml by a careful line edit, so comments and layout survive.

``tars keys`` records every node's public signing key (``sign_key:``) and the admin's
(``cluster.admin_sign_key:``) in the file the user wrote.  Dumping the parsed data again
would drop every comment; ruamel.yaml would keep them but is one more dependency for
one job.  So the text is edited where PyYAML's node tree says a value is: an existing
value's characters are replaced, a missing key is added as one more line of its block
mapping (with the mapping's indentation) or one more ``key: value`` pair of a flow
mapping.  The result is parsed again before it replaces the file (atomically).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import yaml

from evolution.errors import ConfigError

__all__ = ["set_values"]

#: One edit: (where in the text, how many characters it replaces, the new text).
_Edit = tuple[int, int, str]


def set_values(
    path: Path,
    *,
    cluster: Mapping[str, str],
    nodes: Mapping[str, Mapping[str, str]],
    approval_keys: Mapping[str, str] | None = None,
) -> None:
    """Set ``cluster.<key>``, ``nodes[id=<id>].<key>`` and ``approval.keys.<name>`` scalars
    in the file at ``path`` (an approver's key goes into a flow map when ``keys`` is new)."""
    text = Path(path).read_text(encoding="utf-8")
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"{path}: is not a mapping", hint="see docs/cluster.md")
    edits: list[_Edit] = []
    section = _value(root, "cluster")
    if cluster and isinstance(section, yaml.MappingNode):
        edits += [_set(text, section, key, value) for key, value in cluster.items()]
    elif cluster:
        lines = "".join(f"  {key}: {value}\n" for key, value in cluster.items())
        edits.append((len(text), 0, ("" if text.endswith("\n") else "\n") + "cluster:\n" + lines))
    listed = _value(root, "nodes")
    for item in listed.value if isinstance(listed, yaml.SequenceNode) else []:
        ident = _value(item, "id") if isinstance(item, yaml.MappingNode) else None
        wanted = nodes.get(ident.value) if isinstance(ident, yaml.ScalarNode) else None
        for key, value in (wanted or {}).items():
            edits.append(_set(text, item, key, value))
    if approval_keys:
        edits += _approval_keys(text, root, approval_keys)
    for at, length, new in sorted(edits, reverse=True):
        text = text[:at] + new + text[at + length :]
    yaml.safe_load(text)  # never write a file that does not parse
    _write(Path(path), text)


def _approval_keys(text: str, root: yaml.MappingNode, keys: Mapping[str, str]) -> list[_Edit]:
    """The edits that record approvers' keys: into ``approval.keys`` when it exists, else
    as a new ``keys:`` flow map of the ``approval`` section."""
    section = _value(root, "approval")
    flow = "{" + ", ".join(f"{name}: {key}" for name, key in keys.items()) + "}"
    if not isinstance(section, yaml.MappingNode) or not section.value:
        raise ConfigError(
            "cluster.yml has no approval section listing the approvers",
            hint="add `approval: {approvers: [admin, NAME]}` (docs/approval.md), then run `tars keys --id NAME`",
        )
    found = _value(section, "keys")
    if isinstance(found, yaml.MappingNode) and found.value:
        return [_set(text, found, name, key) for name, key in keys.items()]
    return [_set(text, section, "keys", flow)]


def _value(mapping: yaml.Node, key: str) -> yaml.Node | None:
    if not isinstance(mapping, yaml.MappingNode):
        return None
    for k, v in mapping.value:
        if getattr(k, "value", None) == key:
            return v
    return None


def _set(text: str, mapping: yaml.MappingNode, key: str, value: str) -> _Edit:
    """The edit that makes ``mapping[key]`` the plain scalar ``value``."""
    old = _value(mapping, key)
    if old is not None:
        return old.start_mark.index, old.end_mark.index - old.start_mark.index, value
    if mapping.flow_style:  # {a: 1, b: 2}: before the closing brace
        return mapping.end_mark.index - 1, 0, f", {key}: {value}"
    first_key, _ = mapping.value[0]
    indent = " " * first_key.start_mark.column
    _, last = mapping.value[-1]
    end = last.end_mark.index
    if last.end_mark.column != 0:  # after the rest of the last value's line (a comment)
        newline = text.find("\n", end)
        if newline < 0:
            return len(text), 0, f"\n{indent}{key}: {value}\n"
        end = newline + 1
    return end, 0, f"{indent}{key}: {value}\n"


def _write(path: Path, text: str) -> None:
    """Atomically: a crash mid-write must not leave half a cluster.yml."""
    mode = path.stat().st_mode & 0o777
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
