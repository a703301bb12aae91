"""One error tree for all of TARS.

Every error a user can meet derives from :class:`TarsError`, so the CLI can catch one
type, print one line and exit non-zero.  Messages say what was wrong, where, and what
to do; the ``hint`` is appended by :meth:`TarsError.__str__` so callers never forget it.
It lives in ``evolution`` because that package imports nothing else of TARS, so every
other package can import it without breaking the one-way dependency rule.
"""

from __future__ import annotations


class TarsError(Exception):
    """Base of every error TARS raises on purpose."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} — {self.hint}"
        return self.message


class ManifestError(TarsError):
    """A genome manifest is missing, unreadable or invalid."""


class ConfigError(TarsError):
    """A configuration file (cluster.yml, settings) is invalid."""


class GenomeError(TarsError):
    """A genome cannot be used as it is (for example its own tests fail)."""


class PatchError(TarsError):
    """A patch does not parse or does not apply to its parent version."""


class MutationError(TarsError):
    """A mutator could not produce a candidate from a plan."""


class SandboxError(TarsError):
    """The sandbox itself could not be set up (not a failing candidate)."""


class StoreError(TarsError):
    """The event store is unreachable, unwritable or damaged."""


class IntegrityError(StoreError):
    """The hash chain of the log does not verify: history was edited."""


class UnknownVersionError(TarsError):
    """A version id names no version of the genome."""


class UnknownGenomeError(TarsError):
    """A genome name names no genome registered in the store."""


class PolicyError(TarsError):
    """A request contradicts the governor's policy (approve of nothing pending, …)."""


class TransportError(TarsError):
    """The peer transport cannot bind, reach a peer, or got no reply in time."""


class RemoteUnavailable(TransportError):  # noqa: N818 (reads as what happened, like pykka's ActorDeadError)
    """A remote actor's node did not answer (down, cut off, stopped): not an answer from the actor.

    A :class:`TransportError` because that is what it is, so the CLI prints it with its
    hint.  Code that treats a ``TarsError`` as the actor's answer must catch this one
    first: the supervisor does, and retries the message on a fresh local actor.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(
            message,
            hint=hint
            or "check that the peer node is running and reachable (`tars cluster status`); "
            "a supervised pool retries the message on a local actor",
        )


class ConsensusError(TarsError):
    """The replicated ledger cannot commit (no leader, no quorum, timeout)."""


class NotCommittedError(ConsensusError):
    """A proposal was not committed in time; it may still commit later."""


class LLMError(TarsError):
    """A language model could not be asked, or its answer is unusable (a failed candidate, not a failed node).

    ``kind`` is what the log files the failure under (``evolution.llm_usage.FAILURE_KINDS``:
    timeout, unreachable, http, garbage, unparsed, not applied, budget, prompt), so a
    reader can count failures by cause without parsing their messages.
    """

    kind: str = "prompt"

    def __init__(self, message: str, *, hint: str | None = None, kind: str | None = None) -> None:
        super().__init__(message, hint=hint)
        if kind is not None:
            self.kind = kind


class ReplyError(LLMError):
    """A model's reply is not a set of SEARCH/REPLACE blocks that apply to the sources."""

    kind = "unparsed"


class BudgetSpent(LLMError):  # noqa: N818 (reads as what happened, like RemoteUnavailable)
    """The run's model budget (tokens, money or requests) is spent: no more requests."""

    kind = "budget"


class ServiceError(TarsError):
    """A genome's live service cannot serve: a worker not ready, a bad call, no such function."""


class BadCallError(ServiceError):
    """A live call the manifest does not allow: a missing, extra or ill-typed argument."""


class RolloutError(TarsError):
    """A rollout cannot start or go on (no service, green not ready, an unknown rollout)."""


class ScriptError(TarsError):
    """A `.tars` script is wrong: a parse, type or runtime error at one place in it.

    Carries the file, the 1-based line and column, and the text of that line, so the CLI
    (or a test, or the interpreter) can show the line with a caret under the column.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str,
        line: int,
        column: int,
        hint: str | None = None,
        line_text: str = "",
    ) -> None:
        super().__init__(message, hint=hint)
        self.file = file
        self.line = line
        self.column = column
        self.line_text = line_text

    @property
    def where(self) -> str:
        """``file:line:column``, the way editors and compilers say it."""
        return f"{self.file}:{self.line}:{self.column}"

    def __str__(self) -> str:
        return f"{self.where}: {super().__str__()}"

    def render(self) -> str:
        """The error as a compiler shows it: where, what, the line, a caret, the fix."""
        out = [f"{self.where}: error: {self.message}"]
        if self.line_text:
            number = str(self.line)
            text = self.line_text.rstrip("\n").expandtabs(1)
            out.append(f" {number} | {text}")
            out.append(f" {' ' * len(number)} | {' ' * max(self.column - 1, 0)}^")
        if self.hint:
            out.append(f"  fix: {self.hint}")
        return "\n".join(out)
