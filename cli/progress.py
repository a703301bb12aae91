"""Live progress of an evolution run, drawn with rich."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

from evolution.tree import short

if TYPE_CHECKING:
    from rich.console import Console


class CycleProgress:
    """A progress bar over cycles whose description follows the current stage."""

    def __init__(
        self, console: Console, total: int, done: int = 0, label: str = "evolving"
    ) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = console
        self.label = label
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._task = self._progress.add_task(label, total=total, completed=done)

    def __enter__(self) -> CycleProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def __call__(self, stage: str, info: dict[str, Any]) -> None:
        cycle = info.get("cycle")
        prefix = f"{self.label} · cycle {cycle}" if cycle else self.label
        if stage == "analyze":
            self._progress.update(self._task, description=f"{prefix}: profiling {info['version']}")
        elif stage == "generate":
            self._progress.update(
                self._task,
                description=f"{prefix}: {info['opportunities']} opportunities, {info['plans']} plans",
            )
        elif stage == "incubate":
            self._progress.update(
                self._task,
                description=f"{prefix}: proving {info['candidates']} candidates in the sandbox",
            )
        elif stage == "cycle":
            result = info["result"]
            adoption = info.get("adoption")
            if result.stopped:
                self.console.print(f"  cycle {result.cycle}: [yellow]stopping[/]: {result.stopped}")
            elif adoption is not None:
                self.console.print(
                    f"  cycle {result.cycle}: adopted [green]{short(adoption.version)}[/] "
                    f"({adoption.mutator}, {adoption.ratio:.2f}× [{adoption.low:.2f}, {adoption.high:.2f}]"
                    f"{_memory(adoption.evidence)})"
                )
            else:
                verdicts = (
                    ", ".join(f"{r.mutator}:{r.verdict}" for r in info.get("records", []))
                    or "no candidates"
                )
                self.console.print(f"  cycle {result.cycle}: nothing adopted ({verdicts})")
            self._progress.advance(self._task)
        elif stage == "baseline":
            self._progress.update(
                self._task,
                description=f"{self.label}: running {info['genome']}'s own tests and baseline benchmark",
            )
        elif stage == "registered":
            self.console.print(
                f"  registered {info['genome']} at {short(info['version'])} (fitness {info['fitness']:.4g})"
            )


def peak_memory(figures: Any) -> tuple[float, float] | None:
    """Both sides' peak memory (MB) from a record's figures, when it kept them."""
    row = figures.get("peak_memory_mb") if isinstance(figures, dict) else None
    if not isinstance(row, dict):
        return None
    before, after = row.get("parent"), row.get("candidate")
    if not isinstance(before, int | float) or not isinstance(after, int | float):
        return None
    return float(before), float(after)


def _memory(evidence: dict[str, Any]) -> str:
    """ ", peak memory 7.4→7.5 MB" when the adoption kept both sides' peak memory."""
    found = peak_memory(evidence.get("figures"))
    return "" if found is None else f", peak memory {found[0]:.1f}→{found[1]:.1f} MB"
