"""cluster.yml's ``llm:`` section on a node: the session its generator asks the models through.

The section has llm.yml's keys (``runtime/llm_config.py``; docs/llm.md), validated with
the rest of cluster.yml, so a bad one is an error naming the file's line before any node
starts.  Every node opens its own session, since any node may become the leader that
evolves: its reply cache lives in its own state folder (SQLite is one node's file, never
shared), and each API key is read from the environment variable the section names, in
the node's own environment, when the node starts: a key is never in the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from evolution.errors import ConfigError
from runtime.cluster_config import ClusterConfig
from runtime.config_errors import config_error
from runtime.config_yaml import read_yaml
from runtime.llm_cache import ReplyCache
from runtime.llm_client import LLMClient
from runtime.llm_config import LLMConfig
from runtime.llm_session import LLMSession


def node_session(
    cluster: ClusterConfig, node_id: str, environ: Mapping[str, str] | None = None
) -> LLMSession | None:
    """The session of ``node_id``'s generator, or None when cluster.yml has no ``llm:``."""
    config = getattr(cluster.model, "llm", None)
    if config is None:
        return None
    keys = _keys(cluster, config, os.environ if environ is None else environ)
    cache = cluster.state_dir(node_id) / Path(config.cache).name
    cache.parent.mkdir(parents=True, exist_ok=True)
    client = LLMClient(
        keys, retries=config.retries, backoff=config.backoff, max_backoff=config.max_backoff
    )
    return LLMSession(config.model_copy(update={"cache": str(cache)}), client, ReplyCache(cache))


def _keys(cluster: ClusterConfig, config: LLMConfig, environ: Mapping[str, str]) -> dict[str, str]:
    """Each model's key (by arm) from its variable; an unset one is an error at its line."""
    keys: dict[str, str] = {}
    for index, model in enumerate(config.models):
        if model.api_key_env is not None:
            keys[model.arm] = _value(cluster, index, model.api_key_env, environ)
    return keys


def key_environment(
    cluster: ClusterConfig, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The variables cluster.yml's ``llm:`` section names, with their values here.

    A launcher that starts a node somewhere without this shell's environment (a
    container) hands exactly these on, nothing else of the environment; an unset one is
    the same error the node would give, raised before anything starts.
    """
    config = getattr(cluster.model, "llm", None)
    if config is None:
        return {}
    found = os.environ if environ is None else environ
    return {
        model.api_key_env: _value(cluster, index, model.api_key_env, found)
        for index, model in enumerate(config.models)
        if model.api_key_env is not None
    }


def _value(cluster: ClusterConfig, index: int, name: str, environ: Mapping[str, str]) -> str:
    value = environ.get(name, "")
    if value:
        return value
    source = str(cluster.path)
    try:
        root, _ = read_yaml(cluster.path.read_text(encoding="utf-8"), source)
    except (OSError, ConfigError):
        root = None  # the error still names the key, without the line
    raise config_error(
        source,
        root,
        ("llm", "models", index, "api_key_env"),
        f"the environment variable {name} is not set on this node",
        f"export {name}=... where the node starts (the key is never "
        "written in cluster.yml), or remove api_key_env for an endpoint that needs none",
    )
