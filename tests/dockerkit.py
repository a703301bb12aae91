"""The Docker engine and the node image for the tests that run real containers.

The engine is the one ``DOCKER_HOST`` names when it answers, else a private one started
by ``../shared/docker/start-dockerd.sh`` (stopped again at the end of the session); the
tests skip, saying why, only when no engine can be started.  The node image is built
once per session, offline, on ``tars-base:py311`` (made by ``make-base-image.sh`` when
missing).  conftest.py imports the two fixtures, ``engine`` and ``image``.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.docker_image import BASES, ensure_image


def _shared_docker() -> Path | None:
    """``shared/docker`` beside the project (``../shared`` of a checkout or a worktree's)."""
    given = os.environ.get("TARS_SHARED")
    candidates = [Path(given) / "docker"] if given else []
    candidates += [folder / "shared" / "docker" for folder in Path(__file__).resolve().parents]
    return next((c for c in candidates if (c / "start-dockerd.sh").is_file()), None)


def _answers() -> bool:
    import docker

    try:
        docker.from_env().ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def engine() -> Iterator[Any]:
    """A Docker SDK client of a running engine; skips only when none can be started."""
    import docker

    started: Path | None = None
    saved = os.environ.get("DOCKER_HOST")
    if saved is None or not _answers():
        scripts = _shared_docker()
        if scripts is None:
            pytest.skip("no Docker engine: shared/docker/start-dockerd.sh not found beside TARS")
        done = subprocess.run(
            [str(scripts / "start-dockerd.sh")], capture_output=True, text=True, check=False
        )
        found = re.search(r"export DOCKER_HOST=(\S+)", done.stdout)
        if done.returncode != 0 or found is None:
            tail = " | ".join(done.stderr.strip().splitlines()[-3:])
            pytest.skip(f"no Docker engine: start-dockerd.sh failed ({tail})")
        os.environ["DOCKER_HOST"] = found.group(1)
        if "already running" not in done.stderr:
            started = scripts  # ours to stop at the end; an engine someone else runs stays
    client = docker.from_env()
    if not any(_has_image(client, name) for name in BASES):
        scripts = _shared_docker()
        assert scripts is not None, "no base image and no make-base-image.sh to make one"
        subprocess.run([str(scripts / "make-base-image.sh")], check=True, capture_output=True)
    try:
        yield client
    finally:
        client.close()
        if started is not None:
            subprocess.run([str(started / "start-dockerd.sh"), "stop"], capture_output=True)
            if saved is None:
                os.environ.pop("DOCKER_HOST", None)
            else:
                os.environ["DOCKER_HOST"] = saved


def _has_image(client: Any, name: str) -> bool:
    import docker.errors

    try:
        client.images.get(name)
        return True
    except docker.errors.ImageNotFound:
        return False


@pytest.fixture(scope="session")
def image(engine: Any) -> str:
    began = time.monotonic()
    tag = ensure_image(engine)
    print(f"\nnode image {tag} ready in {time.monotonic() - began:.1f} s")
    return tag
