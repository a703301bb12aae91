"""CurveZMQ key pairs for the nodes of a swarm and for the admin CLI.

Files use the certificate format of :func:`zmq.auth.create_certificates` (``<name>.key``
holds the public key, ``<name>.key_secret`` both keys) so that standard ZeroMQ tools
read them too.  A secret file is created with mode 0600 *before* any key is written to
it: writing first and restricting afterwards would leave a window in which another user
could read the key.  Overwriting a secret is refused unless asked for, because every
peer that trusts the old public key would silently stop accepting this node.

Signing keys (Ed25519, for the ledger entries a node or the admin signs) live in the
same secret file, as a ``sign-secret`` line of its ``metadata`` section (base64), so a
name still has exactly two key files and ZeroMQ tools still read them; the file is
rewritten through a new file created 0600 and renamed over it.  The public signing key
goes into cluster.yml (``sign_key:``), which is what every node verifies with.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import tempfile
from pathlib import Path

import zmq
import zmq.auth
from zmq.utils import z85

from evolution.errors import ConfigError

__all__ = [
    "decode_sign_key",
    "encode_sign_key",
    "generate_keypair",
    "has_sign_secret",
    "new_sign_secret",
    "read_keypair",
    "read_public",
    "read_sign_secret",
    "sign_public_of",
    "write_keypair",
    "write_sign_keypair",
]

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


# ---- Ed25519 signing keys ------------------------------------------------------------


def encode_sign_key(raw: bytes) -> str:
    """A 32-byte Ed25519 key as the base64 text cluster.yml and key files hold."""
    return base64.b64encode(raw).decode("ascii")


def decode_sign_key(text: str, where: str) -> bytes:
    """The 32 bytes of a base64 Ed25519 key; ``where`` names it in the error."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ConfigError(f"{where}: not a base64 Ed25519 key (32 bytes)", hint=_HINT)
    return raw


def new_sign_secret() -> bytes:
    """A fresh Ed25519 private key, as its 32 raw bytes."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def sign_public_of(secret: bytes) -> bytes:
    """The raw public key of a raw Ed25519 private key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.from_private_bytes(secret).public_key()
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def write_sign_keypair(directory: Path, name: str, *, force: bool = False) -> str:
    """Add an Ed25519 signing key to ``<directory>/<name>.key_secret``; return its public key.

    The Curve pair must exist (``write_keypair``).  Refused when the file holds a signing
    key already, unless ``force``: every node verifies ``name``'s entries with the public
    key cluster.yml records for it.
    """
    path = Path(directory) / f"{name}.key_secret"
    text = _read_secret_file(path)
    if _SIGN_LINE.search(text) and not force:
        raise ConfigError(
            f"{path} already holds a signing key: refusing to replace the signing key of {name!r}",
            hint="the swarm verifies entries with the current key; pass --force to replace it",
        )
    secret = new_sign_secret()
    line = f'    sign-secret = "{encode_sign_key(secret)}"'
    kept = [row for row in text.splitlines() if not _SIGN_LINE.match(row)]
    if "metadata" in (row.strip() for row in kept):
        at = next(i for i, row in enumerate(kept) if row.strip() == "metadata") + 1
    else:
        kept.append("metadata")
        at = len(kept)
    kept.insert(at, line)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # 0600
        try:
            os.write(fd, ("\n".join(kept) + "\n").encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(
            f"cannot write the signing key of {name!r} into {path}: {exc.strerror or exc}",
            hint="check that the directory is writable",
        ) from exc
    return encode_sign_key(sign_public_of(secret))


def has_sign_secret(directory: Path, name: str) -> bool:
    """Whether ``name``'s secret file exists and holds a signing key."""
    path = Path(directory) / f"{name}.key_secret"
    return path.is_file() and bool(_SIGN_LINE.search(_read_secret_file(path)))


def read_sign_secret(directory: Path, name: str) -> bytes:
    """``name``'s raw Ed25519 private key, from ``<directory>/<name>.key_secret``."""
    path = Path(directory) / f"{name}.key_secret"
    found = _SIGN_LINE.search(_read_secret_file(path))
    if found is None:
        raise ConfigError(f"key file {path} holds no signing key", hint=_HINT)
    return decode_sign_key(found.group(1), f"the signing key in {path}")


def _read_secret_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"key file {path} does not exist", hint=_HINT) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"key file {path} is unreadable: {exc}", hint=_HINT) from exc


_SIGN_LINE = re.compile(r'^\s*sign-secret\s*=\s*"([^"]*)"\s*$', re.MULTILINE)
