"""This version's release record: a dataclass with string annotations.

``dataclasses`` and ``typing.get_type_hints`` look the class's module up in
``sys.modules`` by name; the hot-reload tests check that this works in every version.
"""

from __future__ import annotations

import dataclasses
import typing

from counter.version import TAG


@dataclasses.dataclass(frozen=True)
class Release:
    tag: str
    notes: list[str] = dataclasses.field(default_factory=list)


def release() -> dict:
    return {"tag": Release(TAG).tag, "fields": sorted(typing.get_type_hints(Release))}
