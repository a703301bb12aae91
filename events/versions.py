"""The version index: which lineage position each version of a genome became head at.

``materialise`` of an old version needs that position.  Keeping every version in the
aggregate would grow its snapshots without bound, so each store object keeps an
in-memory index version -> position per genome, filled lazily and incrementally from the
lineage's raw events (``select_events`` after the last position seen).  The head itself
never needs it: ``repository.get`` uses the latest snapshot plus at most 99 events.
"""

from __future__ import annotations

from typing import cast

from events.application import GenomesApplication
from events.chain import event_type
from events.domain import Lineage, lineage_id
from events.transcoder import unpackb
from evolution.errors import IntegrityError, UnknownVersionError
from evolution.tree import short

__all__ = ["HEAD_FIELDS", "VersionIndex"]

#: Events after which the lineage's head is a given version (field holding it).
HEAD_FIELDS = {"Registered": "version", "VersionAdopted": "version", "RolledBack": "to_version"}


class VersionIndex:
    """version -> lineage position per genome, brought up to date on demand."""

    def __init__(self, app: GenomesApplication) -> None:
        self._app = app
        self._index: dict[str, tuple[dict[str, int], int]] = {}

    def forget(self, name: str) -> None:
        """Drop a genome's index (its events were imported behind this object's back)."""
        self._index.pop(name, None)

    def positions(self, name: str) -> dict[str, int]:
        """The version index of one genome, brought up to date from events not yet seen."""
        index, upto = self._index.get(name, ({}, 0))
        for stored in self._app.recorder.select_events(lineage_id(name), gt=upto):
            field = HEAD_FIELDS.get(event_type(stored.topic))
            if field is not None:
                index.setdefault(unpackb(stored.state)[field], stored.originator_version)
            upto = stored.originator_version
        self._index[name] = (index, upto)
        return index

    def resolve(self, name: str, version: str) -> str:
        """The full id of a version of ``name`` given its id or a unique prefix."""
        index = self._index.get(name, ({}, 0))[0]
        if version in index:
            return version
        index = self.positions(name)
        if version in index:
            return version
        matches = [v for v in index if v.startswith(version.lower())] if len(version) >= 4 else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise UnknownVersionError(
                f"version prefix {version} of {name} is ambiguous ({len(matches)} versions)",
                hint="give more characters",
            )
        raise UnknownVersionError(
            f"version {version} is not a version of {name}",
            hint="`tars log lineage` lists its versions",
        )

    def lineage_at(self, name: str, version: str) -> Lineage:
        """The lineage as it was when ``version`` (a full id) became its head."""
        position = self.positions(name)[version]
        lineage = cast(Lineage, self._app.repository.get(lineage_id(name), version=position))
        if lineage.head != version:
            raise IntegrityError(
                f"{name} at position {position} has head {short(lineage.head)}, not {short(version)}",
                hint="run `tars log verify`",
            )
        return lineage
