"""IsolatedModules: two versions of one package, every way Python code imports, side by side.

The trees are written into ``tmp_path``; each module answers with its version's tag, so a
binding that crossed over to the other version shows in the answer.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from runtime.service.isolated import IsolatedModules, top_level_names

FILES = {
    "pkg/__init__.py": 'from pkg.sub.deep import VALUE as DEEP\n__all__ = ["TAG"]\nTAG = "{v}"\n',
    "pkg/sub/__init__.py": "",
    "pkg/sub/deep.py": 'from .. import core\nVALUE = "{v}-deep"\n\ndef up():\n    return core.tag()\n',
    "pkg/core.py": 'import pkg.cyc\n\ndef tag():\n    return "{v}"\n',
    "pkg/cyc.py": "import pkg.core\n\ndef around():\n    return pkg.core.tag()\n",
    "pkg/star.py": "from pkg import *\n\ndef star():\n    return TAG\n",
    "pkg/alias.py": "import pkg.sub.deep as d\n\ndef alias():\n    return d.VALUE\n",
    "pkg/lazy.py": "def later():\n    from pkg.late import LATE\n    return LATE\n",
    "pkg/late.py": "import json\nLATE = json.loads('\"{v}-late\"')\n",
    "pkg/ns/mod.py": 'X = "{v}-ns"\n',
    "pkg/nsuse.py": "from pkg.ns import mod\n\ndef ns():\n    return mod.X\n",
    "helper.py": 'def tag():\n    return "{v}-helper"\n',
    "pkg/top.py": "import helper\n\ndef top():\n    return helper.tag()\n",
}

CALLS = [
    ("pkg.sub.deep", "up", "{v}"),
    ("pkg.cyc", "around", "{v}"),
    ("pkg.star", "star", "{v}"),
    ("pkg.alias", "alias", "{v}-deep"),
    ("pkg.lazy", "later", "{v}-late"),
    ("pkg.nsuse", "ns", "{v}-ns"),
    ("pkg.top", "top", "{v}-helper"),
]


def tree(tmp_path: Path, version: str) -> Path:
    root = tmp_path / version
    for path, text in FILES.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text.replace("{v}", version))
    return root


@pytest.fixture
def versions(tmp_path: Path) -> list[IsolatedModules]:
    out = [IsolatedModules(v, tree(tmp_path, v)) for v in ("v1", "v2")]
    try:
        yield out
    finally:
        for code in out:
            code.drop()


def test_every_import_form_binds_the_modules_own_version(versions: list[IsolatedModules]) -> None:
    v1, v2 = versions
    # interleaved: v1 imports some, v2 all, then v1 the rest (lazy imports at call time)
    assert v1.module("pkg.sub.deep").up() == "v1"
    for code in (v2, v1):
        for module, function, expected in CALLS:
            assert getattr(code.module(module), function)() == expected.replace("{v}", code.version)
    assert v1.module("pkg").DEEP == "v1-deep" and v2.module("pkg").DEEP == "v2-deep"
    assert v1.module("pkg.core") is not v2.module("pkg.core")
    assert v1.module("pkg.late").json is v2.module("pkg.late").json  # libraries are shared
    assert not [name for name in sys.modules if name.split(".")[0] in ("pkg", "helper")]


def test_publish_shows_one_version_in_sys_modules(versions: list[IsolatedModules]) -> None:
    v1, v2 = versions
    v1.module("pkg.core")
    v2.module("pkg.core")
    v1.publish(None)
    assert sys.modules["pkg.core"] is v1.module("pkg.core")
    v2.publish(v1)
    assert sys.modules["pkg.core"] is v2.module("pkg.core")
    v2.module("pkg.late")  # imported while published: stays there
    assert sys.modules["pkg.late"] is v2.module("pkg.late")
    v1.module("pkg.late")  # imported by the old one: v2's entry is put back
    assert sys.modules["pkg.late"] is v2.module("pkg.late")
    v2.drop()
    assert not [name for name in sys.modules if name.split(".")[0] in ("pkg", "helper")]


def test_a_failed_import_leaves_nothing_behind(tmp_path: Path) -> None:
    root = tree(tmp_path, "v1")
    (root / "pkg" / "bad.py").write_text("import pkg.core\nraise RuntimeError('at import')\n")
    code = IsolatedModules("v1", root)
    try:
        with pytest.raises(RuntimeError, match="at import"):
            code.module("pkg.bad")
        assert "pkg.bad" not in code.loaded() and "pkg.core" in code.loaded()
        assert "pkg.bad" not in sys.modules and "pkg.core" not in sys.modules
        with pytest.raises(ModuleNotFoundError):
            code.module("pkg.nothere")
        with pytest.raises(ModuleNotFoundError):
            code.module("pkg.core.notapackage")
    finally:
        code.drop()


def test_a_version_owns_only_the_importable_names_at_its_root(tmp_path: Path) -> None:
    root = tree(tmp_path, "v1")
    (root / "data").mkdir()  # no __init__.py: not a package name the version claims
    (root / "not-a-name.py").write_text("")
    (root / "genome.toml").write_text("")
    assert top_level_names(root) == {"pkg", "helper"}
    code = IsolatedModules("v1", root)
    assert code.owns("pkg.anything") and not code.owns("json") and not code.owns("data")
