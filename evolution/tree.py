"""A version's tree: the genome's files as text, named by a hash of their content.

Trees are plain ``dict[str, str]`` (relative POSIX path → text) so they are cheap to
copy, compare and encode; the version id is a hash over a canonical encoding, so the
same files give the same id on every node whatever the order they were read in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

Tree = dict[str, str]

#: Length of the hex version ids shown to users; ids are full sha256 internally.
SHORT = 12


def version_id(tree: Mapping[str, str]) -> str:
    """Hash a tree canonically: sorted paths, each length-prefixed, so no two trees collide by framing."""
    digest = hashlib.sha256()
    for path in sorted(tree):
        raw_path = path.encode("utf-8")
        raw_text = tree[path].encode("utf-8")
        digest.update(len(raw_path).to_bytes(4, "big"))
        digest.update(raw_path)
        digest.update(len(raw_text).to_bytes(8, "big"))
        digest.update(raw_text)
    return digest.hexdigest()


def short(version: str) -> str:
    """The prefix of a version id shown in tables and messages."""
    return version[:SHORT]


def normalise_path(path: str) -> str:
    """Reject paths that could escape a genome folder; return the POSIX form."""
    clean = (
        path.replace("\\", "/").lstrip("./") if path.startswith("./") else path.replace("\\", "/")
    )
    parts = [p for p in clean.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts) or clean.startswith("/"):
        raise ValueError(f"path {path!r} is not a relative path inside the genome")
    return "/".join(parts)
