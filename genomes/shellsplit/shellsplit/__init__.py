"""CPython 3.11.7 shlex, unchanged, as a package module (NOTICE.md)."""
