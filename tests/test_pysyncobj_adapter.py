"""The pysyncobj adapter: every private name it relies on exists in the pinned pysyncobj.

``consensus/_pysyncobj.py`` declares the names in ``PRIVATE_NAMES``; these tests fail the
day pysyncobj (pinned at 0.3.17) renames or drops one of them, instead of a Raft
cluster misbehaving at run time.  They also keep the adapter the only module that
reaches into pysyncobj's name-mangled state.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pysyncobj.pipe_notifier
import pysyncobj.syncobj
import pysyncobj.transport
import pytest

from consensus import _pysyncobj
from consensus._pysyncobj import PRIVATE_NAMES, Core, PrivateName
from consensus.journal import CrcJournal
from consensus.testing import LocalHub
from consensus.timers import RaftTimers
from consensus.wire import RaftNode, _RaftWire

ROOT = Path(__file__).resolve().parent.parent
CLASSES: dict[str, Any] = {
    "SyncObj": pysyncobj.syncobj.SyncObj,
    "Transport": pysyncobj.transport.Transport,
    "PipeNotifier": pysyncobj.pipe_notifier.PipeNotifier,
}
# Spelled in two halves so that this file does not itself match the grep it enforces.
MANGLED = re.compile("_" + "(?:SyncObj|PipeNotifier)" + "__" + r"\w+")


@pytest.fixture(scope="module")
def instances(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A real pysyncobj core, built through the adapter exactly as the engine builds one."""
    root = tmp_path_factory.mktemp("adapter")
    journal = CrcJournal(root / "a.journal")
    wire = _RaftWire(LocalHub().transport("a"), {}, journal.sync, 1.0, journal)

    def deserialize(name: str) -> Any:
        raise AssertionError("no snapshot here")

    core = Core(
        RaftNode("a"),
        [],
        journal,
        wire,
        RaftTimers(),
        dump_file=root / "a.journal.snap",
        deserialize=deserialize,
        on_state_changed=lambda old, new: None,
        batch_bytes=1 << 20,
    )
    raw = core._core
    notifier = getattr(raw, "_" + "SyncObj" + "__pipeNotifier")
    try:
        yield {"SyncObj": raw, "PipeNotifier": notifier}
    finally:
        core.destroy()
        journal.close()


def test_the_pinned_version_is_installed() -> None:
    assert importlib.metadata.version("pysyncobj") == "0.3.17"


@pytest.mark.parametrize("need", PRIVATE_NAMES, ids=lambda n: f"{n.owner}.{n.name}")
def test_every_private_name_exists(need: PrivateName, instances: dict[str, Any]) -> None:
    if need.on == "module":
        owner: Any = importlib.import_module(need.owner)
    elif need.on == "class":
        owner = CLASSES[need.owner]
    else:
        owner = instances[need.owner]
    assert hasattr(owner, need.name), f"pysyncobj lacks {need.owner}.{need.name} ({need.on})"


def test_the_list_names_every_private_name_the_adapter_uses() -> None:
    source = Path(_pysyncobj.__file__).read_text(encoding="utf-8")
    listed = {n.name for n in PRIVATE_NAMES}
    used = set(MANGLED.findall(source))
    used |= set(re.findall(r"\._on[A-Z]\w+", source.split("class WireBase", 1)[1]))
    used = {name.lstrip(".") for name in used}
    used |= set(re.findall(r"_core\.(_[a-z]\w*)", source))
    used |= set(re.findall(r"pso_syncobj\.(_?[A-Za-z]\w*)", source)) - {"SyncObj"}
    assert used, "the scan found nothing: the adapter changed shape"
    assert used <= listed, f"used but not in PRIVATE_NAMES: {sorted(used - listed)}"


def test_the_command_type_bytes_are_pysyncobjs() -> None:
    """The wire lets pysyncobj's no-op and membership commands in by their type byte."""
    from consensus import wire

    kinds = pysyncobj.syncobj._COMMAND_TYPE
    assert (wire._NO_OP, wire._MEMBERSHIP) == (kinds.NO_OP, kinds.MEMBERSHIP)
    assert wire.TAG[0] not in vars(kinds).values()  # ours is never one of pysyncobj's


def test_only_the_adapter_reaches_into_pysyncobjs_mangled_state() -> None:
    offenders = []
    for path in ROOT.rglob("*.py"):
        relative = path.relative_to(ROOT)
        if relative.parts[0].startswith(".") or relative.parts[0] in ("build", "genomes"):
            continue
        if MANGLED.search(path.read_text(encoding="utf-8", errors="replace")):
            offenders.append(str(relative))
    assert offenders == ["consensus/_pysyncobj.py"]


def test_the_adapter_reads_and_steers_the_core(instances: dict[str, Any], tmp_path: Path) -> None:
    """The adapter's reads agree with pysyncobj's public view, and its writes take effect."""
    journal = CrcJournal(tmp_path / "b.journal")
    wire = _RaftWire(LocalHub().transport("b"), {}, journal.sync, 1.0, journal)
    core = Core(
        RaftNode("b"),
        [],
        journal,
        wire,
        RaftTimers(),
        dump_file=tmp_path / "b.journal.snap",
        deserialize=lambda name: (None, None, []),
        on_state_changed=lambda old, new: None,
        batch_bytes=1 << 20,
    )
    try:
        assert core.term == 0 and not core.is_leader and core.leader is None
        assert core.last_log() == (0, 1)  # pysyncobj starts a log with a no-op at index 1
        core.restart_election_timer()
        assert not core.election_due()  # a fresh timeout lies ahead
        core.campaign_now()
        assert core.election_due()
        core.tick()  # alone, this node is a majority: it wins at once
        assert core.is_leader and core.term == 1
        assert core.leader is not None and core.leader.id == "b"
        assert not core.election_due()  # a leader never campaigns
    finally:
        core.destroy()
        journal.close()
