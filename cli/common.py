"""What every `tars` command shares: the console, store opening, error printing.

Import cost matters here: every `tars` invocation imports the command modules, so they
import only typer, rich's console and the error types at module level; each command
imports what it needs (the store, libcst, pykka, zmq, pydantic models) when it runs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console

from evolution.errors import StoreError, TarsError

if TYPE_CHECKING:
    from events.store import GenomeStore

console = Console(soft_wrap=True)
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_STORE = Path(".tars") / "store.db"


def store_url(store: str, *, must_exist: bool) -> str:
    """Accept a path or a URL; a path becomes a SQLite URL."""
    if "://" in store:
        return store
    path = Path(store).expanduser()
    if must_exist and not path.exists():
        raise StoreError(f"store {path} does not exist", hint="pass --store PATH of a store a node or `tars demo` wrote")
    return f"sqlite:///{path.resolve()}"


@contextmanager
def open_store(store: str, *, must_exist: bool = True) -> Iterator[GenomeStore]:
    from events.store import GenomeStore

    handle = GenomeStore.open(store_url(store, must_exist=must_exist), create=not must_exist)
    try:
        yield handle
    finally:
        handle.close()


def fail(message: str, code: int = 1) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def handle_errors(func: F) -> F:
    """Turn a TarsError into one line on stderr and a non-zero exit, never a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except TarsError as exc:
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]: the store holds every completed cycle; run the same command to resume")
            sys.exit(130)

    return wrapper  # type: ignore[return-value]
