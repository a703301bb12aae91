"""Login tokens for people and programs that should not hold the admin key.

``tars keys --token NAME`` makes one: a random token is printed once, and only its
SHA-256 is kept, in ``<keys>/tokens/NAME.json`` (with the token's role), so a copy of
the keys folder does not give the token away.  The dashboard's login and the MCP
server's HTTP side call :func:`check_token`; the comparison runs over every stored hash
in constant time, so the time it takes says nothing about which prefix matched.

Roles say what a login may do (docs/dashboard.md, "Who may do what"): ``viewer`` reads,
``operator`` also steers rollouts, ``approver`` also decides held candidates; the
admin key may do everything.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from pathlib import Path

from evolution.errors import ConfigError
from runtime.cluster_config import ClusterConfig

__all__ = [
    "ROLES",
    "check_token",
    "make_token",
    "token_role",
    "tokens_dir",
]

#: every role, each allowed what the one before it may do and more
ROLES = ("viewer", "operator", "approver", "admin")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_PREFIX = "tars_"


def tokens_dir(config: ClusterConfig) -> Path:
    """Where the token hashes are kept: ``<keys>/tokens``."""
    return config.keys_dir / "tokens"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def make_token(config: ClusterConfig, name: str, *, role: str = "operator") -> str:
    """A new token for ``name`` (replacing an earlier one of that name); only its hash is stored.

    The caller shows the returned token once: it cannot be read back from the store.
    """
    if not _NAME.match(name):
        raise ConfigError(
            f"token name {name!r} is not a plain name",
            hint="use letters, digits, '.', '_' or '-' (at most 64), e.g. `--token alice`",
        )
    if role not in ROLES:
        raise ConfigError(f"unknown token role {role!r}", hint=f"roles: {', '.join(ROLES)}")
    folder = tokens_dir(config)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = _PREFIX + secrets.token_urlsafe(32)
    record = {"name": name, "role": role, "sha256": _digest(token)}
    path = folder / f"{name}.json"
    tmp = folder / f".{name}.json.partial"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as stream:
        json.dump(record, stream)
    tmp.replace(path)
    return token


def _records(config: ClusterConfig) -> list[dict[str, str]]:
    folder = tokens_dir(config)
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # a damaged record grants nothing
        if (
            isinstance(record, dict)
            and isinstance(record.get("sha256"), str)
            and record.get("name") == path.stem
            and record.get("role") in ROLES
        ):
            found.append(record)
    return found


def check_token(config: ClusterConfig, presented: str) -> str | None:
    """The name of the token ``presented`` is, or None; every stored hash is compared."""
    if not isinstance(presented, str) or not presented:
        return None
    digest = _digest(presented)
    match: str | None = None
    for record in _records(config):
        if hmac.compare_digest(record["sha256"], digest):
            match = record["name"]
    return match


def token_role(config: ClusterConfig, name: str) -> str | None:
    """The role a token of that name was made with (None: no such token)."""
    for record in _records(config):
        if record["name"] == name:
            return record["role"]
    return None
