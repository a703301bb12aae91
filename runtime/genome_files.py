"""Reading a genome folder from disk into a manifest and a tree."""

from __future__ import annotations

import shutil
from pathlib import Path

from evolution.errors import GenomeError, ManifestError
from evolution.manifest import MANIFEST_NAME, Manifest, parse_manifest
from evolution.tree import Tree

#: Folders and suffixes that are build products, never part of a version.
SKIP_DIRS = {
    "__pycache__",
    ".git",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".venv",
    "node_modules",
}
SKIP_SUFFIXES = {".pyc", ".pyo", ".so", ".o"}
MAX_FILE_BYTES = 2 * 1024 * 1024


def load_genome(folder: Path) -> tuple[Manifest, Tree]:
    """Manifest and every text file of a genome folder; errors name the folder and the fix."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GenomeError(
            f"genome folder {folder} does not exist",
            hint="pass --genome PATH to a folder with a genome.toml",
        )
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        raise ManifestError(
            f"{manifest_path}: no manifest", hint="add a genome.toml (see docs/genome-format.md)"
        )
    try:
        manifest_text = manifest_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(
            f"{manifest_path}: cannot be read ({exc})", hint="check its permissions and encoding"
        ) from exc
    manifest = parse_manifest(manifest_text, str(manifest_path))
    tree = read_tree(folder)
    sources = [p for p in tree if manifest.is_source(p)]
    if not sources:
        raise ManifestError(
            f"{manifest_path}: key 'genome.sources' matches no file in {folder}",
            hint='list globs relative to the genome folder, e.g. "mypkg/*.py"',
        )
    for tunable in manifest.tunable:
        if tunable.file not in tree:
            raise ManifestError(
                f"{manifest_path}: key 'tunable.file': {tunable.file} is not in the genome",
                hint="give a path relative to the genome folder",
            )
    return manifest, tree


def read_tree(folder: Path) -> Tree:
    """Text files under ``folder``; Python files end with a newline so patches round-trip.

    Only ``.py`` files are normalised (universal newlines, a final newline): a data file is
    read byte for byte, because a test may compare it exactly (CPython's difflib test
    compares an HTML file that has no final newline; tomllib's tests parse files with a
    bare carriage return, and files that end mid-value, on purpose).
    """
    tree: Tree = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if (
            any(part in SKIP_DIRS or part.startswith(".") for part in rel.parts)
            or not path.is_file()
        ):
            continue
        if path.suffix in SKIP_SUFFIXES:
            continue
        if path.stat().st_size > MAX_FILE_BYTES:
            raise GenomeError(
                f"genome file {path} is over {MAX_FILE_BYTES // 1024} KiB",
                hint="keep data files out of the genome folder",
            )
        try:
            # Python files in universal-newline mode (patches are made of "\n" lines);
            # data files exactly as they are, "\r" and "\r\n" included.
            with open(path, encoding="utf-8", newline=None if path.suffix == ".py" else "") as f:
                text = f.read()
        except UnicodeDecodeError as exc:
            raise GenomeError(
                f"genome file {path} is not UTF-8 text",
                hint="genomes hold text files only; move binaries out",
            ) from exc
        if text and not text.endswith("\n") and path.suffix == ".py":
            text += "\n"
        tree[rel.as_posix()] = text
    return tree


def write_tree(tree: Tree, folder: Path) -> None:
    """Write a tree into an empty (or new) folder, refusing to overwrite anything."""
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise GenomeError(
            f"output folder {folder} is not empty", hint="pass --out to a new or empty folder"
        )
    tmp = folder.with_name(folder.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    for rel, text in tree.items():
        target = tmp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    tmp.mkdir(parents=True, exist_ok=True)
    if folder.exists():
        folder.rmdir()
    tmp.rename(folder)  # all or nothing: no half-written tree is left under the real name
