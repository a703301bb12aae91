"""A reloadable, stateful counter (v2): the test genome of hot reload (docs/hot-reload.md)."""
