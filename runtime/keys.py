"""CurveZMQ key pairs for the nodes of a swarm and for the admin CLI.

Files use the certificate format of :func:`zmq.auth.create_certificates` (``<name>.key``
holds the public key, ``<name>.key_secret`` both keys) so that standard ZeroMQ tools
read them too.  A secret file is created with mode 0600 *before* any key is written to
it: writing first and restricting afterwards would leave a window in which another user
could read the key.  Overwriting a secret is refused unless asked for, because every
peer that trusts the old public key would silently stop accepting this node.
"""

from __future__ import annotations

import os
from pathlib import Path

import zmq
import zmq.auth
from zmq.utils import z85

from evolution.errors import ConfigError

__all__ = ["generate_keypair", "read_keypair", "read_public", "write_keypair"]

_HINT = "run `tars keys --config cluster.yml`"


def generate_keypair() -> tuple[str, str]:
    """Return a fresh ``(public, secret)`` pair, z85 text, for callers that keep keys in memory."""
    public, secret = zmq.curve_keypair()
    return public.decode("ascii"), secret.decode("ascii")


def write_keypair(directory: Path, name: str, *, force: bool = False) -> str:
    """Create ``name``'s key files in ``directory`` and return its public key (z85)."""
    directory = Path(directory)
    secret_file = directory / f"{name}.key_secret"
    if secret_file.exists() and not force:
        raise ConfigError(
            f"{secret_file} already exists: refusing to replace the secret key of {name!r}",
            hint="peers trust the current key; pass --force to replace it and then "
            "redistribute the public keys",
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # Create (or restrict) the secret file first, so the key is never readable by others.
        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)
        os.chmod(secret_file, 0o600)
        made_public, made_secret = zmq.auth.create_certificates(directory, name)
        os.chmod(made_secret, 0o600)
    except OSError as exc:
        raise ConfigError(
            f"cannot write the key files of {name!r} in {directory}: {exc.strerror or exc}",
            hint="check that the directory is writable",
        ) from exc
    public, _ = _load(Path(made_public), need_secret=False)
    return public


def read_public(directory: Path, name: str) -> str:
    """Return ``name``'s public key (z85) from ``<directory>/<name>.key``."""
    public, _ = _load(Path(directory) / f"{name}.key", need_secret=False)
    return public


def read_keypair(directory: Path, name: str) -> tuple[str, str]:
    """Return ``name``'s ``(public, secret)`` pair (z85) from ``<directory>/<name>.key_secret``."""
    public, secret = _load(Path(directory) / f"{name}.key_secret", need_secret=True)
    assert secret is not None
    return public, secret


def _load(path: Path, *, need_secret: bool) -> tuple[str, str | None]:
    if not path.is_file():
        raise ConfigError(f"key file {path} does not exist", hint=_HINT)
    try:
        public_raw, secret_raw = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"key file {path} is unreadable or corrupt: {exc}", hint=_HINT) from exc
    public = _check_key(public_raw, path, "public")
    if not need_secret:
        return public, None
    if secret_raw is None:
        raise ConfigError(f"key file {path} holds no secret key", hint=_HINT)
    secret = _check_key(secret_raw, path, "secret")
    if zmq.curve_public(secret.encode("ascii")).decode("ascii") != public:
        raise ConfigError(
            f"key file {path} is corrupt: its public key does not match its secret key",
            hint=_HINT,
        )
    return public, secret


def _check_key(raw: bytes, path: Path, which: str) -> str:
    try:
        text = raw.decode("ascii")
        ok = len(text) == 40 and len(z85.decode(text)) == 32
    except (UnicodeDecodeError, ValueError, KeyError, IndexError):
        ok = False
    if not ok:
        raise ConfigError(
            f"key file {path} is corrupt: its {which} key is not a 40-character z85 key",
            hint=_HINT,
        )
    return text
