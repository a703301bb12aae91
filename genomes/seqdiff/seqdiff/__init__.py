"""CPython 3.11.7 difflib, unchanged, as a package module (NOTICE.md)."""
