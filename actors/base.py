"""The common shell of TARS actors: dispatch on message type, nothing else."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import pykka

from actors.messages import Crash


class RoleActor(pykka.ThreadingActor):
    """A pykka actor that routes each message type to one handler method.

    Handlers are pure-logic calls; the table keeps each actor thin and makes an
    unexpected message an error the sender sees instead of a silent drop.
    """

    handlers: ClassVar[dict[type, str]] = {}
    role: ClassVar[str] = "actor"

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Crash):
            raise RuntimeError(f"{self.role}: {message.reason}")
        name = self.handlers.get(type(message))
        if name is None:
            raise TypeError(f"{self.role} does not handle {type(message).__name__}")
        handler: Callable[[Any], Any] = getattr(self, name)
        return handler(message)
