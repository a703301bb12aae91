"""A small MCP server whose tool has a typed output schema and an effect the test can see:
``mark(name)`` appends the name to the file given as the first argument and answers
``{"count": marks so far, "name": name}`` (tests/test_lang_call.py starts it over stdio)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TypedDict

from mcp.server.fastmcp import FastMCP


class Done(TypedDict):
    count: int
    name: str


server = FastMCP("marks", log_level="WARNING")
MARKS = Path(sys.argv[1])


@server.tool()
def mark(name: str) -> Done:
    """Append ``name`` to the marks file; how many marks there are now."""
    with MARKS.open("a", encoding="utf-8") as f:
        f.write(name + "\n")
    return {"count": len(MARKS.read_text(encoding="utf-8").split()), "name": name}


if __name__ == "__main__":
    server.run("stdio")
