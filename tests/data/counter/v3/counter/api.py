"""Stateless calls; ``tag`` is bound by ``from … import`` when this module is imported."""

from counter.version import tag

from . import store


def which() -> str:
    return tag()


def layout() -> str:
    """The state layout this version's store module writes (through a relative import)."""
    return store.LAYOUT


def hold(gate, started) -> str:
    """Block until ``gate`` is set (a call in flight), then answer with this version's tag."""
    started.set()
    gate.wait(30)
    return tag()


def version_module() -> object:
    """This version's ``counter.version`` module, imported at call time."""
    import counter.version

    return counter.version
