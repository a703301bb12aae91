"""The node image: TARS built from wheels made on the host, tagged by what it contains.

No registry is reachable where TARS runs its tests (and many clusters are built
offline), so nothing is downloaded during ``docker build``: the host makes wheels of the
project and of every dependency (``pip wheel``; the dependencies once, into a cache
reused by every later build), fetches bubblewrap and valgrind as Debian packages where
it has apt, and hands the engine a context folder with ``wheels/``, ``debs/`` and the
``Dockerfile``; the build runs with ``network_mode="none"``.

The tag is a hash of what goes in (the Dockerfile, the base image's id, every wheel's
members, every package), so an unchanged project reuses its image and a changed one,
even by one line, gets a new image: a container always runs the code it was asked to.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

from evolution.errors import TarsError

#: Repository of the node images; the tag is the content hash.
REPOSITORY = "tars-node"
#: Base images tried in order when none is named: the offline one first.
BASES = ("tars-base:py311", "python:3.11-slim")
#: Debian packages installed into the image when the host can fetch them: the jail
#: (bubblewrap; util-linux's setpriv, which drops a root jail to uid 65534 where
#: busybox's cannot) and the instruction counter (valgrind), with their libraries;
#: libseccomp for the filter that keeps a counted run one process (runtime/_count_guard.py).
DEBS = (
    "bubblewrap",
    "libcap2",
    "libselinux1",
    "libpcre2-8-0",
    "util-linux",
    "libcap-ng0",
    "valgrind",
    "libc6-dbg",
    "libseccomp2",
)
#: Wheels that building the project's own wheel needs (its build-system requires).
BUILD_TOOLS = ("setuptools>=68", "wheel")
#: Zip timestamps of the project wheel: fixed, so the same sources give the same bytes.
EPOCH = "315532800"


def project_root() -> Path:
    """The source tree of the running TARS, which the image is built from."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file() or not (root / "Dockerfile").is_file():
        raise TarsError(
            f"no TARS source tree (pyproject.toml and Dockerfile) at {root}",
            hint="run the docker backend from a checkout of TARS installed with `pip install -e .`",
        )
    return root


def cache_dir() -> Path:
    """Where dependency wheels and packages are kept between builds."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("TARS_DOCKER_CACHE", Path(base) / "tars" / "docker"))


def _run(argv: list[str], what: str, *, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise TarsError(
            f"{what} failed (exit {done.returncode}): {tail}",
            hint="run it by hand to see the whole output: " + " ".join(argv),
        )


def _pip(*args: str) -> list[str]:
    return [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]


def dependency_wheels(root: Path, cache: Path) -> Path:
    """Wheels of every dependency (and of the build tools) in ``cache/wheels``.

    Offline first, from the cache alone; the package index is asked only when the cache
    lacks something (the first build, or a new dependency).
    """
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    wanted = [*BUILD_TOOLS, *project["dependencies"]]
    offline = _pip("wheel", "-q", "--no-index", "--find-links", str(wheels), "-w", str(wheels))
    if subprocess.run([*offline, *wanted], capture_output=True, check=False).returncode != 0:
        online = _pip("wheel", "-q", "--find-links", str(wheels), "-w", str(wheels))
        _run([*online, *wanted], "pip wheel of the dependencies")
    return wheels


def project_wheel(root: Path, wheels: Path, out: Path) -> Path:
    """The project's own wheel, built offline against the cached build tools."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("tars_swarm-*.whl"):
        old.unlink()
    argv = _pip("wheel", "-q", "--no-deps", "--no-index", "--find-links", str(wheels))
    _run([*argv, "-w", str(out), str(root)], "pip wheel of TARS", env=_epoch_env())
    built = sorted(out.glob("tars_swarm-*.whl"))
    if not built:
        raise TarsError(f"pip wheel made no TARS wheel in {out}", hint="check pyproject.toml")
    return built[-1]


def _epoch_env() -> dict[str, str]:
    return {**os.environ, "SOURCE_DATE_EPOCH": EPOCH}


def debian_packages(cache: Path) -> list[Path]:
    """bubblewrap and valgrind as .deb files, fetched once; none where the host has no apt."""
    debs = cache / "debs"
    have = sorted(debs.glob("*.deb"))
    if len(have) >= len(DEBS):
        return have
    if shutil.which("apt-get") is None:
        return []
    debs.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["apt-get", "download", "-q", *DEBS], cwd=debs, capture_output=True, check=False
    )
    return sorted(debs.glob("*.deb")) if done.returncode == 0 else []


def content_tag(files: list[Path], base_id: str) -> str:
    """A hash of everything the image is made of: wheel members (not zip dates), packages."""
    digest = hashlib.sha256(base_id.encode())
    for path in sorted(files, key=lambda p: p.name):
        digest.update(path.name.encode() + b"\0")
        if path.suffix == ".whl":
            with zipfile.ZipFile(path) as wheel:
                for name in sorted(wheel.namelist()):
                    digest.update(name.encode() + b"\0" + wheel.read(name))
        else:
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _link(source: Path, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / source.name
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def base_image(client: Any, wanted: str | None = None) -> Any:
    """The base image to build on: the one asked for, else the first of :data:`BASES` present."""
    import docker.errors

    for name in [wanted] if wanted else BASES:
        try:
            return client.images.get(name)
        except docker.errors.ImageNotFound:
            continue
    raise TarsError(
        f"no base image for the node image: {wanted or ' or '.join(BASES)} is not in the engine",
        hint="make the offline one with ../shared/docker/make-base-image.sh, "
        "or load python:3.11-slim (`docker pull` where a registry is reachable)",
    )


def ensure_image(client: Any, *, base: str | None = None, work: Path | None = None) -> str:
    """The tag of the node image for this source tree, building it if the engine lacks it."""
    root = project_root()
    cache = cache_dir()
    wheels = dependency_wheels(root, cache)
    context = work or cache / f"context-{os.getpid()}"
    shutil.rmtree(context, ignore_errors=True)
    try:
        return _build(client, root, wheels, context, base)
    finally:
        if work is None:
            shutil.rmtree(context, ignore_errors=True)


def _build(client: Any, root: Path, wheels: Path, context: Path, base: str | None) -> str:
    """Assemble the context, hash it, and build unless the engine has that tag already."""
    import docker.errors

    own = project_wheel(root, wheels, context / "wheels")
    for wheel in wheels.glob("*.whl"):
        _link(wheel, context / "wheels")
    (context / "debs").mkdir(parents=True, exist_ok=True)
    for deb in debian_packages(cache_dir()):
        _link(deb, context / "debs")
    shutil.copy2(root / "Dockerfile", context / "Dockerfile")
    parent = base_image(client, base)
    parts = [own, context / "Dockerfile", *sorted((context / "debs").glob("*.deb"))]
    parts += [w for w in (context / "wheels").glob("*.whl") if w != own]
    tag = f"{REPOSITORY}:{content_tag(parts, parent.id)}"
    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    base_name = parent.tags[0] if parent.tags else parent.id
    try:
        client.images.build(
            path=str(context),
            tag=tag,
            buildargs={"BASE_IMAGE": base_name},
            network_mode="none",
            rm=True,
            forcerm=True,
            labels={"tars.image": "node"},
        )
    except docker.errors.BuildError as exc:
        lines = [str(step.get("stream", "")).strip() for step in exc.build_log]
        tail = " | ".join(line for line in lines if line)[-300:]
        raise TarsError(
            f"docker build of {tag} failed: {exc.msg}; {tail}",
            hint=f"the context is in {context}; build it by hand with `docker build --network none {context}`",
        ) from exc
    return tag
