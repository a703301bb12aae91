"""`tars check FILE.tars`: parse and type-check a script without running it.

The language itself is pure (:mod:`evolution.lang`); this is its edge: it reads the file,
checks that the genomes it points at exist (relative to the script's folder), and prints
every error with its line and a caret, or ``ok: N blocks, M tune parameters``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cli.common import console, err_console, handle_errors
from evolution.errors import ConfigError, ScriptError

if TYPE_CHECKING:
    from evolution.lang.ast import Program


def read_script(path: Path) -> str:
    """A script's text; a missing or unreadable file is an error saying which."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"no script at {path}", hint="pass the path of a .tars file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read {path}: {exc}", hint="pass a readable UTF-8 .tars file"
        ) from None


def missing_genomes(program: Program, base: Path) -> list[ScriptError]:
    """``genome NAME from "path"`` whose manifest is not there (relative to the script)."""
    from evolution.lang import ast as A
    from evolution.lang.parser import error_at

    found: list[ScriptError] = []
    for decl in program.decls:
        path = decl.path if isinstance(decl, A.GenomeDecl) else None
        if path is not None and path.endswith(".toml") and not (base / path).is_file():
            found.append(
                error_at(
                    program.text,
                    decl.pos,
                    f"no genome manifest at {path} (relative to the script's folder)",
                    "point at an existing genome.toml, relative to the .tars file",
                )
            )
    return found


@handle_errors
def check(
    script: Path = typer.Argument(..., help="the .tars script to check"),
) -> None:
    """Parse and type-check a .tars script; print its errors (exit 1) or a summary."""
    from evolution.lang.checker import check_source

    text = read_script(script)
    checked = check_source(text, str(script))
    errors = list(checked.errors)
    if checked.program is not None:
        errors += missing_genomes(checked.program, script.parent)
        errors.sort(key=lambda e: (e.line, e.column))
    if errors:
        for error in errors:
            err_console.print(_styled(error), highlight=False, soft_wrap=True)
        err_console.print(f"[bold red]{len(errors)} error(s)[/] in {script}", highlight=False)
        raise typer.Exit(1)
    info = checked.info
    assert info is not None
    console.print(
        f"ok: {len(info.blocks)} blocks, {len(info.tunes)} tune parameters", highlight=False
    )


def _styled(error: ScriptError) -> str:
    """The caret rendering with rich markup: the place in bold, the error in red."""
    from rich.markup import escape

    first, *rest = error.render().split("\n")
    where, _, what = first.partition(": error: ")
    lines = [f"[bold]{escape(where)}[/]: [bold red]error:[/] {escape(what)}"]
    for line in rest:
        lines.append(
            f"[cyan]{escape(line)}[/]" if line.lstrip().startswith("fix:") else escape(line)
        )
    return "\n".join(lines)
