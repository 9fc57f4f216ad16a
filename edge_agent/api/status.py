"""What ``GET /status`` (and ``edge-agent ps``) shows: models, the hub link, plugins.

    body = agent_status(state)     # a JSON-ready dict; cheap: no model or network calls

Also what the agent logs once at start about its plugins (``log_plugins``): name, version
and sha256 of every loaded module, as llama-server logs the model it loaded.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from edge_agent import __version__
from edge_agent.api.state import AgentState
from edge_agent.models import model_facts
from shared.plugins import PluginWatcher

__all__ = ["agent_status", "cloud_model_cards", "log_plugins", "plugin_status"]

log = logging.getLogger("edge_agent.api")


def _rss_bytes() -> int | None:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def plugin_status(watcher: PluginWatcher | None) -> dict[str, Any]:
    """The plugin chain: directory, each plugin's version and digest, the last reload error."""
    if watcher is None:
        return {"dir": None, "loaded": [], "last_error": None}
    return {
        "dir": str(watcher.directory.resolve()),
        "loaded": [
            {
                "name": p.manifest.name,
                "version": p.manifest.version,
                "sha256": p.manifest.sha256,
                "hooks": sorted(p.manifest.hooks),
            }
            for p in watcher.chain.plugins
        ],
        "reloads": watcher.generation,
        "last_error": None if watcher.last_error is None else str(watcher.last_error),
    }


def log_plugins(watcher: PluginWatcher) -> None:
    """One INFO line per loaded plugin (name, version, sha256), then the directory."""
    status = plugin_status(watcher)
    for plugin in status["loaded"]:
        log.info(
            "loaded plugin %s %s sha256:%s",
            plugin["name"],
            plugin["version"],
            plugin["sha256"],
            extra={"plugin": plugin["name"], "sha256": plugin["sha256"]},
        )
    log.info("plugins from %s: %d loaded", status["dir"], len(status["loaded"]))


def _hub_reachable(state: AgentState) -> bool:
    return state.uplink is not None and state.uplink.available()


def cloud_model_cards(state: AgentState) -> list[dict[str, Any]]:
    """``/v1/models`` entries for the cloud aliases: names a client may call that the hub answers."""
    reachable = _hub_reachable(state)
    return [
        {
            "id": alias,
            "object": "model",
            "created": int(state.started),
            "owned_by": "open-autoglm-hub",
            "tier": "cloud",
            "cloud_model": target,
            "task": "chat",
            "ready": reachable,
            "hub_reachable": reachable,
        }
        for alias, target in sorted(state.settings.router.cloud_aliases.items())
        if alias not in state.registry.models
    ]


def _models(state: AgentState) -> list[dict[str, Any]]:
    depths = state.queue_depths()
    out = []
    for model in state.registry.models.values():
        card: dict[str, Any] = {
            "id": model.id,
            "tier": "edge",
            "ready": model.runtime is not None,
            "path": str(model.spec.path),
            **model_facts(model),
        }
        if model.id in depths:
            card["slots"] = state.scheduler_slots(model.id)
            card["queue_depth"] = depths[model.id]
            card["max_queue"] = state.settings.max_queue
        out.append(card)
    return out


def agent_status(state: AgentState) -> dict[str, Any]:
    """Everything ``GET /status`` answers."""
    registry = state.registry
    hub: dict[str, Any] = {"configured": state.uplink is not None}
    if state.uplink is not None:
        hub.update(state.uplink.status())
    router = state.settings.router
    hub["default_cloud_model"] = router.default_cloud_model
    hub["cloud_aliases"] = dict(router.cloud_aliases)
    return {
        "status": registry.state,
        "version": __version__,
        "device_id": state.settings.device_id,
        "uptime_s": round(time.time() - state.started, 1),
        "process": {"pid": os.getpid(), "rss_bytes": _rss_bytes()},
        "models": _models(state),
        "load_error": registry.error,
        "hub": hub,
        "plugins": plugin_status(state.plugins),
    }
