"""A reloadable, stateful counter (v3): the test genome of hot reload (docs/hot-reload.md)."""
