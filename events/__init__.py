"""The event-sourced domain of genome lineages: events, aggregate, msgpack transcoder, store, projections.

Import from the submodules (``events.store``, ``events.records``, ``events.projections``);
this package module stays empty so importing one part does not pull in the others.
"""
