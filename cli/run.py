"""`tars run FILE.tars`: type-check a script (the errors of `tars check`), then run it.

Top-level ``let``s are computed in order (reading the sources they use), then each
``evolve`` campaign runs in the script's order on one node's store (``--store``), with
its handlers (:mod:`cli.run_campaign`).  A failing script stops at its first runtime
error, shown as `tars check` shows errors; what the engine wrote before (whole cycles)
stays, nothing half-written.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cli.common import DEFAULT_STORE, console, err_console, handle_errors
from cli.node import WEAK_HELP
from cli.script import _styled, missing_genomes, read_script
from evolution.errors import ScriptError, TarsError

if TYPE_CHECKING:
    from evolution.lang.ast import EvolveDecl, Program
    from runtime.lang.host import RealHost


@handle_errors
def run(
    script: Path = typer.Argument(..., help="the .tars script to run"),
    store: str = typer.Option(
        str(DEFAULT_STORE), "--store", help="event store: a SQLite path or a postgresql:// URL"
    ),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="follow the running swarm of this cluster.yml (its ledger)"
    ),
    wait: float = typer.Option(
        600.0, "--wait", help="with --config: seconds a campaign may wait for its cycles"
    ),
    notify: str | None = typer.Option(
        None, "--notify", help="http(s) URL: each `notify` is also POSTed there as JSON"
    ),
    workdir: Path = typer.Option(Path(".tars"), "--workdir", help="the node's work folder"),
    write: bool = typer.Option(
        False, "--write", help="with improve_self: also write the improved script to its file"
    ),
    weak: bool = typer.Option(False, "--accept-weak-isolation", help=WEAK_HELP),
) -> None:
    """Type-check a .tars script, then run it: its lets, sources, prompts and campaigns."""
    from cli.run_campaign import Campaign
    from cli.run_swarm import SwarmCampaign
    from cli.run_tune import any_improving, improve, script_history
    from evolution.lang import ast as A
    from evolution.lang.checker import check_source
    from evolution.lang.eval import Interpreter
    from runtime.lang.host import RealHost

    text = read_script(script)
    checked = check_source(text, str(script))
    errors = list(checked.errors)
    if checked.program is not None:
        errors += missing_genomes(checked.program, script.parent)
    if errors:
        for error in sorted(errors, key=lambda e: (e.line, e.column)):
            err_console.print(_styled(error), highlight=False, soft_wrap=True)
        err_console.print(f"[bold red]{len(errors)} error(s)[/] in {script}", highlight=False)
        raise typer.Exit(1)
    assert checked.program is not None

    def say(message: str) -> None:
        console.print(message, markup=False, highlight=False, soft_wrap=True)

    # a script's call is a dozen Python frames: room for ~800 levels of its own recursion
    # (deeper is a ScriptError at the call, never a crash)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    host = RealHost(text, script.parent, checked.table, say, webhook=notify)
    interp = Interpreter(checked, host, history=script_history(script, store))
    try:
        with top_level_model(checked.program, host):
            interp.start()
        for decl in checked.program.decls:
            if isinstance(decl, A.EvolveDecl) and not host.stopped:
                with at_campaign(decl, text):
                    if config is not None:
                        swarm = SwarmCampaign(interp, host, decl, console)
                        host.on_deploy = swarm.deploy
                        swarm.follow(config, wait)
                        continue
                    campaign = Campaign(interp, host, decl, console)
                    host.on_deploy = campaign.deploy
                    campaign.run(store, workdir, weak)
        for decl, _ in any_improving(checked.program, interp):
            with at_campaign(decl, text):
                seed = int(Campaign(interp, host, decl, console).set.get("seed", 7))
                improve(checked, host, decl, script, store, workdir, weak, write, console, seed)
                if config is not None:  # a client may not write a member's entries
                    say(f"tune: recorded in {store} (this machine's log), not in the swarm's "
                        "ledger: docs/language.md, \"On a swarm\"")  # fmt: skip
    except ScriptError as error:
        err_console.print(_styled(error), highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    finally:
        host.close()  # the MCP servers `call` kept open for the run
    console.print(f"ok: {script} ran", highlight=False)


@contextmanager
def top_level_model(program: Program, host: RealHost) -> Iterator[None]:
    """The first campaign's ``llm = "file"`` for the prompts the top-level ``let``s call."""
    from evolution.lang import ast as A
    from runtime.llm_session import LLMSession

    found = [
        item.value
        for decl in program.decls
        if isinstance(decl, A.EvolveDecl)
        for item in decl.settings
        if isinstance(item, A.Setting) and item.name == "llm" and isinstance(item.value, A.Str)
    ]
    if not found or not any(isinstance(d, A.PromptDecl) for d in program.decls):
        yield
        return
    path = "".join(p for p in found[0].parts if isinstance(p, str))
    session = LLMSession.open(host.base / path)
    host.llm = session
    try:
        yield
    finally:
        host.llm = None
        session.close()


@contextmanager
def at_campaign(decl: EvolveDecl, text: str) -> Iterator[None]:
    """The engine's errors during a campaign (a genome already registered with another tree,
    an llm.yml without a budget, a swarm that does not answer) said at the `evolve` block."""
    from evolution.lang.parser import error_at

    try:
        yield
    except ScriptError:
        raise
    except TarsError as exc:
        raise error_at(
            text, decl.pos, f"campaign on `{decl.genome}`: {exc.message}", exc.hint or ""
        ) from None
