"""A reloadable, stateful counter (v1): the test genome of hot reload (docs/hot-reload.md)."""
