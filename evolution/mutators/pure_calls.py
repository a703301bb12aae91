"""Which callees only read their arguments: the vocabulary every purity question is asked in.

A rewrite that moves, caches or reorders a call is sound only if the call changes
nothing the program can see.  These tables name the builtins and methods known to read
their inputs and return a fresh value; anything not listed counts as impure.  The
tables after them serve caching (:mod:`~evolution.mutators.purity`): which results
callers cannot mutate, and which uses show that an argument is a container.
"""

from __future__ import annotations

#: builtins that only read their arguments and return a fresh value
PURE_BUILTINS = frozenset(
    {
        "abs",
        "all",
        "any",
        "bool",
        "chr",
        "divmod",
        "enumerate",
        "float",
        "format",
        "frozenset",
        "hash",
        "int",
        "isinstance",
        "len",
        "list",
        "max",
        "min",
        "ord",
        "pow",
        "range",
        "repr",
        "reversed",
        "round",
        "set",
        "sorted",
        "str",
        "sum",
        "tuple",
        "zip",
        "dict",
        "bin",
        "hex",
        "oct",
        "issubclass",
    }
)

#: methods that read their receiver and never change it (str, dict reads, re patterns/matches)
PURE_METHODS = frozenset(
    {
        "lower",
        "upper",
        "strip",
        "lstrip",
        "rstrip",
        "split",
        "rsplit",
        "splitlines",
        "startswith",
        "endswith",
        "find",
        "rfind",
        "index",
        "rindex",
        "count",
        "replace",
        "join",
        "isdigit",
        "isalpha",
        "isalnum",
        "isspace",
        "isupper",
        "islower",
        "isnumeric",
        "isdecimal",
        "format",
        "encode",
        "decode",
        "partition",
        "rpartition",
        "casefold",
        "title",
        "capitalize",
        "zfill",
        "ljust",
        "rjust",
        "center",
        "get",
        "keys",
        "values",
        "items",
        "copy",
        "group",
        "groups",
        "groupdict",
        "start",
        "end",
        "span",
        "match",
        "search",
        "fullmatch",
        "findall",
        "finditer",
        "sub",
        "subn",
        "removeprefix",
        "removesuffix",
        "expandtabs",
        "translate",
        # bisect's searches read their list and change nothing (its insort* mutate: not here)
        "bisect_left",
        "bisect_right",
    }
)

#: standard modules whose functions neither do I/O nor keep state between calls
PURE_MODULES = frozenset(
    {"math", "cmath", "re", "string", "operator", "statistics", "unicodedata", "json"}
)
#: functions that are pure when imported by name (``from urllib.parse import unquote``)
PURE_FROM_IMPORTS = frozenset(
    {
        ("urllib.parse", n)
        for n in ("unquote", "unquote_plus", "quote", "quote_plus", "urlsplit", "urlparse")
    }
    | {
        ("math", n)
        for n in ("sqrt", "log", "log2", "log10", "exp", "floor", "ceil", "isclose", "fabs", "gcd")
    }
    | {("unicodedata", n) for n in ("normalize", "category", "name")}
    | {("os.path", n) for n in ("splitext", "basename", "dirname", "normpath", "join")}
)
#: callees whose result is immutable (or shared already without the cache)
IMMUTABLE_CALLS = frozenset(
    {
        "len",
        "int",
        "float",
        "str",
        "bool",
        "abs",
        "round",
        "min",
        "max",
        "sum",
        "tuple",
        "frozenset",
        "ord",
        "chr",
        "hash",
        "repr",
        "divmod",
        "pow",
        "hex",
        "bin",
        "oct",
        "format",
        "isinstance",
    }
)
#: methods returning a str, bool or int
IMMUTABLE_METHODS = frozenset(
    {
        "lower",
        "upper",
        "strip",
        "lstrip",
        "rstrip",
        "replace",
        "join",
        "format",
        "casefold",
        "title",
        "capitalize",
        "zfill",
        "ljust",
        "rjust",
        "center",
        "startswith",
        "endswith",
        "find",
        "rfind",
        "count",
        "index",
        "rindex",
        "isdigit",
        "isalpha",
        "isalnum",
        "isspace",
        "isupper",
        "islower",
        "isnumeric",
        "isdecimal",
        "encode",
        "decode",
        "removeprefix",
        "removesuffix",
        "get",
        "group",
    }
)
#: calls and methods that suggest their argument is a container
CONTAINER_READERS = frozenset(
    {
        "len",
        "sorted",
        "sum",
        "min",
        "max",
        "list",
        "tuple",
        "set",
        "frozenset",
        "dict",
        "enumerate",
        "zip",
        "any",
        "all",
        "iter",
        "reversed",
        "map",
        "filter",
    }
)
CONTAINER_METHODS = frozenset({"get", "keys", "values", "items", "copy"})
