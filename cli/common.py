"""What every `tars` command shares: the console, store opening, error printing.

Import cost matters here: every `tars` invocation imports the command modules, so they
import only typer, rich's console and the error types at module level; each command
imports what it needs (the store, libcst, pykka, zmq, pydantic models) when it runs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console

from evolution.errors import StoreError, TarsError

if TYPE_CHECKING:
    from events.store import GenomeStore

try:  # typer >= 0.2x converts every parameter value through a pydantic TypeAdapter
    from typer._coercion import RuntimeParam
    from typer._param_types import coerce_cli_path
    from typer.core import TyperCommand, TyperGroup
except ImportError:  # an older typer converts with click and never imports pydantic
    RuntimeParam = None  # type: ignore[assignment,misc]

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
        raise StoreError(
            f"store {path} does not exist",
            hint="pass --store PATH of a store a node or `tars demo` wrote",
        )
    return f"sqlite:///{path.resolve()}"


@contextmanager
def read_store(store: str) -> Iterator[GenomeStore]:
    """An existing TARS store opened read-only, for the commands that only look (`tars log`).

    Nothing is created or written, so a look at another application's file cannot turn
    it into a store, and a store on read-only media (a backup, an evidence copy) opens.
    """
    from events.backends import read_only_url
    from events.store import GenomeStore

    handle = GenomeStore.open(read_only_url(store_url(store, must_exist=True)), create=False)
    try:
        yield handle
    finally:
        handle.close()


@contextmanager
def open_store(store: str, *, must_exist: bool = True) -> Iterator[GenomeStore]:
    """A store opened to write one local decision (`tars rollback --store`, `tars approve`).

    An existing store that a swarm node applies its ledger to is refused before anything
    is written: see :func:`refuse_swarm_store`.
    """
    from events.store import GenomeStore

    url = store_url(store, must_exist=must_exist)
    if must_exist:
        refuse_swarm_store(url)
    handle = GenomeStore.open(url, create=not must_exist)
    try:
        yield handle
    finally:
        handle.close()


def refuse_swarm_store(url: str) -> None:
    """Refuse to write into a store that has applied ledger entries (a swarm node's store).

    Such a store must equal its peers' at every applied index; an event written into it
    alone forks the node from the swarm for good, so the change has to go through the
    ledger, where every node applies it.
    """
    from consensus.ledger import LEDGER
    from events.backends import read_only_url, redact
    from events.store import GenomeStore

    with GenomeStore.open(read_only_url(url), create=False) as probe:
        applied = probe.applied(LEDGER)
    if applied is not None:
        raise StoreError(
            f"store {redact(url).removeprefix('sqlite:///')} belongs to a swarm: it has applied "
            f"the ledger up to index {applied}; a change written into it alone would fork "
            "this node from the swarm",
            hint="change the swarm through its ledger with --config cluster.yml "
            "(`tars rollback --config cluster.yml --genome G --to V`)",
        )


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
            err_console.print(
                "[yellow]interrupted[/]: the store holds every completed cycle; run the same command to resume"
            )
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


#: Boolean words pydantic (so typer) accepts, lower case.
_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"", "0", "f", "false", "n", "no", "off"})
#: Parameter types converted without pydantic.
_PLAIN = (str, int, bool, Path)


if RuntimeParam is not None:

    @dataclass(frozen=True)
    class _PlainParam(RuntimeParam):
        """Conversion of a plain ``str``, ``int``, ``bool`` or ``Path`` value, as typer does it, minus pydantic."""

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            kind = self.annotation
            if kind is Path:
                return coerce_cli_path(
                    Path(value), self.parameter_info, path_type=Path, param=param, ctx=ctx
                )
            if isinstance(value, kind):
                return value
            if kind is bool and isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
                return value.strip().lower() in _TRUE
            if kind is str and isinstance(value, bytes):
                return value.decode(sys.getfilesystemencoding(), "surrogateescape")
            if kind is not bool:
                try:
                    return kind(value)
                except (TypeError, ValueError):
                    pass
            raise typer.BadParameter(
                f"{value!r} is not a valid {kind.__name__}", ctx=ctx, param=param
            )

    def _plain_params(params: list[Any]) -> None:
        """Give typer's ``str``/``int``/``bool``/``Path`` parameters the converter without pydantic."""
        for param in params:
            descriptor: Any = getattr(param, "type_descriptor", None)
            info = getattr(descriptor, "parameter_info", None)
            if (
                info is None
                or getattr(param, "_runtime_param", False) is not None
                or descriptor.annotation not in _PLAIN
                or param.nargs != 1
                or getattr(param, "multiple", False)
                or info.parser is not None
                or info.min is not None
                or info.max is not None
            ):
                continue
            param._runtime_param = _PlainParam(
                parameter_info=info, annotation=descriptor.annotation
            )

    class PlainCommand(TyperCommand):
        """A typer command whose plain parameters are converted without pydantic.

        typer (0.2x) builds a pydantic ``TypeAdapter`` for every parameter it converts, so
        any command with an option imports pydantic: 0.1–0.15 s of a `tars log ls` that
        should take a fraction of a second.  For ``str``, ``int``, ``bool`` and ``Path``
        parameters with no parser, bounds or several values, this command sets typer's
        (lazily built, private) converter to :class:`_PlainParam`; every other parameter
        keeps typer's own.  If typer's internals move, commands still work and only import
        pydantic again (``tests/test_cli.py`` checks that `tars log ls` does not).
        """

        def get_params(self, ctx: Any) -> list[Any]:  # --help is made here, per context
            params: list[Any] = super().get_params(ctx)
            _plain_params(params)
            return params

    class PlainGroup(TyperGroup):
        """A typer group (its own options: --help, completion) converted like :class:`PlainCommand`."""

        def get_params(self, ctx: Any) -> list[Any]:  # --help is made here, per context
            params: list[Any] = super().get_params(ctx)
            _plain_params(params)
            return params

else:  # pragma: no cover - an older typer: the defaults (which need no pydantic)
    PlainCommand = None  # type: ignore[assignment,misc]
    PlainGroup = None  # type: ignore[assignment,misc]
