"""Which of a node's service pools run in containers, and with what (cluster.yml ``service:``).

The docker backend starts a node as a container of the TARS image and tells it that
image (:data:`ENV_IMAGE`) and the engine (``DOCKER_HOST``, its socket mounted); with
``service: {placement: auto}`` (the default) such a node then runs every service pool
in a new container of its own image (:mod:`runtime.service.contained`). A process node
does so only when cluster.yml says ``placement: container``; it then needs an engine
and uses ``service.image``, or builds the node image once (:mod:`runtime.docker_image`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from runtime.config import ClusterConfig, ServiceSection
from runtime.docker_launcher import (
    ENV_IMAGE,
    LABEL_CLUSTER,
    LABEL_CONFIG,
    LABEL_NODE,
    container_prefix,
    engine,
)
from runtime.service.contained import ContainerSpec

__all__ = ["ENV_IMAGE", "service_containers"]


class _Lazy:
    """The engine client and the image, made on first use (a pool start), then kept."""

    def __init__(self, image: str | None) -> None:
        self._client: Any | None = None
        self._image = image
        self._lock = threading.Lock()

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = engine(None)
            return self._client

    def image(self) -> str:
        client = self.client()
        with self._lock:
            if self._image is None:
                from runtime.docker_image import ensure_image

                self._image = ensure_image(client)
            return self._image


def service_containers(
    config: ClusterConfig, node_id: str, env: Mapping[str, str] | None = None
) -> ContainerSpec | None:
    """How ``node_id`` runs its pools in containers, or None to keep them in the jail."""
    env = os.environ if env is None else env
    section = getattr(config.model, "service", None)
    section = section if isinstance(section, ServiceSection) else ServiceSection()
    given = env.get(ENV_IMAGE) or None
    if section.placement == "jail" or (section.placement == "auto" and given is None):
        return None
    lazy = _Lazy(section.image or given)
    labels = {LABEL_CLUSTER: config.name, LABEL_CONFIG: str(config.path), LABEL_NODE: node_id}
    return ContainerSpec(
        engine=lazy.client,
        image=lazy.image,
        labels=labels,
        prefix=f"{container_prefix(config)}-{node_id}-svc",
    )
