"""The interpreter's host: what a running script reads, asks and does in the world.

Sources are read through :mod:`runtime.lang.sources`; a prompt block asks the campaign's
model (an :class:`~runtime.llm_session.LLMSession`) and reads the reply into its type;
``notify`` prints and, with a webhook URL, POSTs ``{"script", "line", "text"}``;
``deploy`` and ``stop`` are handed to the campaign driver (``on_deploy``), which knows the
version and whether a swarm is there.  Every failure is a ``ScriptError`` at the script's
place, with the line and a caret.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evolution.errors import ConfigError, ScriptError, TarsError
from evolution.lang import ast as A
from evolution.lang.parser import error_at
from evolution.lang.types import Ty, TypeTable
from evolution.lang.values import Mismatch, Rec, conform, rec, schema_problem

if TYPE_CHECKING:
    from evolution.lang.eval import Server
    from runtime.lang.mcp_client import Sessions
    from runtime.llm_session import LLMSession


class RealHost:
    """The host a ``tars run`` hands the interpreter."""

    def __init__(
        self,
        text: str,
        base: Path,
        table: TypeTable,
        say: Callable[[str], None],
        webhook: str | None = None,
    ) -> None:
        self.text, self.base, self.table, self.say = text, base, table, say
        self.webhook = webhook
        self.llm: LLMSession | None = None
        self.models: list[str] = []
        self.notes: list[str] = []
        self.stopped: str | None = None
        #: the campaign driver's hook for `deploy` (strategy, arguments, place)
        self.on_deploy: Callable[[str, dict[str, Any], A.Pos], None] | None = None
        #: the driver's hooks for the genome records and the built-ins
        self.genomes: Callable[[A.GenomeDecl], Rec] | None = None
        self.builtins: Callable[[str, Rec], Any] | None = None
        #: the MCP servers `call` has started or connected to, kept for the run
        self.sessions: Sessions | None = None

    def close(self) -> None:
        """End what the run opened (the MCP servers' sessions)."""
        if self.sessions is not None:
            self.sessions.close()
            self.sessions = None

    def fail(self, pos: A.Pos, message: str, hint: str) -> ScriptError:
        """A ScriptError at ``pos``."""
        return error_at(self.text, pos, message, hint)

    def source(self, decl: A.SourceDecl, ty: Ty, location: Any, args: list[Any]) -> Any:
        """Read a source; a record that does not fit is an error at the declaration."""
        from runtime.lang.sources import SourceProblem, read_source

        ref = decl.type
        fmt = ref.args[0].name if ref.name in ("file", "http") else ref.name
        try:
            return read_source(ref.name, fmt, ty, self.table, location, args, self.base)
        except SourceProblem as exc:
            raise self.fail(decl.pos, f"source `{decl.name}`: {exc.message}", exc.hint) from None
        except TarsError as exc:
            raise self.fail(
                decl.pos, f"source `{decl.name}`: {exc.message}", exc.hint or ""
            ) from None

    def genome(self, decl: A.GenomeDecl) -> Rec:
        """A declared genome as a ``Genome`` record (its head from the log once registered)."""
        if self.genomes is not None:
            return self.genomes(decl)
        return genome_record(decl, self.base, None)

    def prompt(self, decl: A.PromptDecl, text: str, result: Ty) -> Any:
        """Ask the campaign's first model with ``text``; the reply read into ``result``."""
        from evolution.lang.replies import ReplyMismatch, read_reply

        if self.llm is None:
            raise self.fail(
                decl.pos,
                f"prompt `{decl.name}` has no model to ask",
                'set `llm = "llm.yml"` (and `models`) in the script\'s evolve block',
            )
        models = [m for m in self.llm.config.models if not self.models or m.arm in self.models]
        model = (models or list(self.llm.config.models))[0]
        try:
            reply = self.llm.ask(model, [{"role": "user", "content": text}])
        except TarsError as exc:
            raise self.fail(
                decl.pos, f"prompt `{decl.name}`: {exc.message}", exc.hint or ""
            ) from None
        try:
            return read_reply(reply.text, result, self.table)
        except ReplyMismatch as exc:
            raise self.fail(
                decl.pos,
                f"prompt `{decl.name}`: {exc}",
                f"ask the model for {result} (say the shape in the prompt's text)",
            ) from None

    def action(self, kind: str, value: Any, pos: A.Pos) -> None:
        """``notify``, ``deploy`` or ``stop``."""
        if kind == "notify":
            self.notes.append(value)
            self.say(value)
            if self.webhook:
                self._post(value, pos)
        elif kind == "stop":
            self.stopped = value
            self.say(f"stop: {value}")
        elif self.on_deploy is not None:
            strategy, args = value
            self.on_deploy(strategy, args, pos)
        else:
            raise self.fail(pos, "deploy outside a campaign", "deploy from an `on` handler")

    def _post(self, text: str, pos: A.Pos) -> None:
        import httpx

        body = {"script": pos.file, "line": pos.line, "text": text}
        try:
            httpx.post(self.webhook or "", json=body, timeout=10.0).raise_for_status()
        except httpx.HTTPError as exc:
            raise self.fail(
                pos, f"the notify webhook failed: {exc}", "check --notify URL"
            ) from None

    def call(self, server: Server, tool: str, args: dict[str, Any], ty: Ty, pos: A.Pos) -> Any:
        """``call ops.tool(…)``: the tool called on the server (started or connected to
        for this call); a tool error, an unknown tool or a result that does not fit ``ty``
        is an error at the statement naming the server and the tool."""
        from runtime.lang.mcp_client import Sessions

        label = f"call {server.name}.{tool}"
        if self.sessions is None:
            self.sessions = Sessions(self.base)
        try:
            found = self.sessions.tool(server.location, tool)
            problem = schema_problem(found.output_schema, ty, self.table)
            if problem is not None:
                raise self.fail(
                    pos,
                    f"{label}: {problem}; the tool was not called",
                    "declare the type the tool's output schema gives, or leave the call loose",
                )
            data = self.sessions.call(server.location, tool, args)
        except TarsError as exc:
            if isinstance(exc, ScriptError):
                raise
            raise self.fail(pos, f"{label}: {exc.message}", exc.hint or "") from None
        try:
            return conform(data, ty, self.table)
        except Mismatch as exc:
            raise self.fail(
                pos,
                f"{label}: the result does not fit {ty}: {exc}",
                "declare the type the tool gives (its output schema), or leave the call loose",
            ) from None

    def builtin(self, name: str, arg: Rec) -> Any:
        """``hotspots(g)`` / ``history(g)`` from the campaign driver."""
        if self.builtins is None:
            raise ConfigError(
                f"{name}() reads the engine, which starts with a campaign",
                hint="call it inside an `evolve` block's `on` handler",
            )
        return self.builtins(name, arg)


def genome_record(decl: A.GenomeDecl, base: Path, head: Rec | None) -> Rec:
    """A ``Genome`` from its manifest; ``head`` is its head ``Version`` (a blank one before registering)."""
    from runtime.genome_files import load_genome

    folder = base / (decl.path or decl.name)
    folder = folder.parent if folder.name.endswith(".toml") else folder
    manifest, _ = load_genome(folder)
    blank = rec("Version", id="", parent=None, fitness=None, message="not registered yet")
    return rec(
        "Genome",
        name=manifest.name,
        path=str(folder),
        metric=manifest.fitness.metric,
        direction=manifest.fitness.direction,
        sources=list(manifest.genome.sources),
        head=head or blank,
    )
