"""cluster.yml as text: reading the YAML strictly, keeping its header, writing it back atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from evolution.errors import ConfigError
from runtime.config_errors import key_path


def read_yaml(text: str, source: str) -> tuple[yaml.Node | None, dict[str, Any]]:
    """The node tree (for error lines) and the data of a cluster.yml that is a mapping."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = exc.problem or exc.context or "syntax error"
        raise ConfigError(
            f"{where}: not valid YAML ({problem})",
            hint="fix the syntax at the line and column shown",
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({exc})", hint="fix the syntax") from exc
    _no_duplicate_keys(root, source)
    if data is None:
        raise ConfigError(
            f"{source}: is empty", hint="write at least a nodes: list (see docs/cluster.md)"
        )
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a mapping of cluster, nodes, genomes and evolution, got {type(data).__name__}",
            hint="see docs/cluster.md for the layout",
        )
    return root, data


def _no_duplicate_keys(
    node: yaml.Node | None, source: str, loc: tuple[str | int, ...] = ()
) -> None:
    """PyYAML keeps the last of two equal keys silently; a doubled ``port:`` is a mistake to report."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = str(getattr(key, "value", ""))
            if name in seen:
                raise ConfigError(
                    f"{source}:{key.start_mark.line + 1}: {key_path((*loc, name))}: given twice",
                    hint="keep one of the two lines",
                )
            seen.add(name)
            _no_duplicate_keys(value, source, (*loc, name))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _no_duplicate_keys(item, source, (*loc, index))


def header(text: str) -> str:
    """The comment block at the top of the file, kept when the CLI writes the file back."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return "\n".join(lines) + "\n" if lines else ""


def write_atomic(path: Path, data: dict[str, Any], header: str) -> None:
    """Write atomically: a crash mid-write must not leave a half cluster.yml behind."""
    text = header + yaml.safe_dump(
        data, sort_keys=False, default_flow_style=False, allow_unicode=True
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
