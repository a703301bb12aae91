"""Who is logged in to the dashboard, what each login may do, and the CSRF check.

A login is the admin key's secret (the CurveZMQ secret in ``<keys>/admin.key_secret``)
or a token made by ``tars keys --token NAME`` (:mod:`runtime.access_tokens`).  A good
login gets a session: a random id in an HttpOnly, SameSite=Strict cookie, and a CSRF
token bound to that session that every POST must bring back (a form field or the
``X-CSRF-Token`` header); both are compared in constant time.  Sessions live in memory:
a restarted dashboard asks everyone to log in again, which is the safe side.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ACTIONS", "COOKIE", "Logins", "Session", "Sessions", "allowed"]

COOKIE = "tars_session"
#: what each action needs at least (roles in the order of runtime.access_tokens.ROLES)
ACTIONS = {"rollout": "operator", "decide": "approver"}
_RANK = {"viewer": 0, "operator": 1, "approver": 2, "admin": 3}
#: a session ends after this many seconds without a request
IDLE_SECONDS = 8 * 3600


def allowed(role: str, action: str) -> bool:
    """Whether a login of ``role`` may do ``action`` (an unknown action: nobody may)."""
    needed = ACTIONS.get(action)
    return needed is not None and _RANK.get(role, -1) >= _RANK[needed]


@dataclass(frozen=True)
class Logins:
    """How a presented secret becomes a login: ``(name, role)`` or None."""

    #: the admin key's secret, or None where this process does not hold it
    admin_secret: str | None
    #: :func:`runtime.access_tokens.check_token` bound to the config
    check_token: Callable[[str], str | None]
    #: a token name's role
    role_of: Callable[[str], str | None]

    def login(self, presented: str) -> tuple[str, str] | None:
        presented = presented.strip()
        if not presented:
            return None
        if self.admin_secret is not None and hmac.compare_digest(
            presented.encode(), self.admin_secret.encode()
        ):
            return "admin", "admin"
        name = self.check_token(presented)
        if name is None:
            return None
        role = self.role_of(name)
        return (name, role) if role is not None else None


@dataclass
class Session:
    login: str
    role: str
    csrf: str
    seen: float


class Sessions:
    """The logged-in sessions of one dashboard, by their cookie's id."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}

    def open(self, login: str, role: str) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        session = Session(login, role, secrets.token_urlsafe(32), self._clock())
        with self._lock:
            self._sessions[sid] = session
        return sid, session

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        now = self._clock()
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                return None
            if now - session.seen > IDLE_SECONDS:
                del self._sessions[sid]
                return None
            session.seen = now
            return session

    def close(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)

    def alive(self, sid: str | None) -> bool:
        """Whether ``sid`` is still a session, without counting the question as activity:
        an open event stream asks this before every event, so a logout or an idle expiry
        ends the stream instead of the stream keeping the session alive."""
        with self._lock:
            session = self._sessions.get(sid or "")
            return session is not None and self._clock() - session.seen <= IDLE_SECONDS

    @staticmethod
    def csrf_ok(session: Session, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(
            session.csrf.encode(), str(presented).encode()
        )
