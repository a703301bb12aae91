"""The TARS language's edge with the world: data sources, the MCP client, the interpreter's host.

The evaluation itself is pure (:mod:`evolution.lang.eval`); what a script reads, asks or
changes goes through :class:`runtime.lang.host.RealHost`.
"""
