"""The event-sourced domain of genome lineages: events, aggregate, msgpack transcoder, store, projections.

Import from the submodules (``events.store`` for ``GenomeStore``, ``events.records``,
``events.projections``, ``events.domain``); this package module stays empty so importing
one part does not pull in the others (``tars log`` stays quick to start).
``docs/event-store.md`` says which module holds what.
"""
