"""The model names a pipeline may ask for, and where the all-in-one sends them.

``glm-4-plus`` and the Claude/GPT family names are **cloud aliases**: the agent's router sends
them to the hub (reason ``policy``). In the all-in-one they all reach one hub model,
``glm-4-plus`` (the bundled SmolLM2 standing in for a big model). On a real fleet each alias
names its own hub model, served by the hub's ``openai`` back-end (see the README's hub.toml).
``glm-small`` is a **local alias**: the agent answers it with its own model, like any local request.
"""

from __future__ import annotations

__all__ = ["CLOUD_FAMILIES", "CLOUD_MODEL", "LOCAL_SMALL", "cloud_aliases", "local_aliases"]

CLOUD_MODEL = "glm-4-plus"
"""The hub model of the all-in-one."""

LOCAL_SMALL = "glm-small"
"""The seed's "lightweight local model": an alias of the agent's own model."""

#: Requested name → the hub model a fleet would serve it with (hub model names are NATS
#: subject tokens: no dots). The all-in-one maps every one of them to ``CLOUD_MODEL``.
CLOUD_FAMILIES: dict[str, str] = {
    "glm-4-plus": "glm-4-plus",
    "glm-4": "glm-4-plus",
    "glm-4-air": "glm-4-air",
    "glm-4-flash": "glm-4-flash",
    "claude-sonnet-4-5": "claude-sonnet",
    "claude-opus-4-1": "claude-opus",
    "claude-3-5-haiku-latest": "claude-haiku",
    "gpt-4o": "gpt-4o",
    "gpt-4o-mini": "gpt-4o-mini",
    "gpt-4.1": "gpt-4-1",
}


def cloud_aliases(*, hub_model: str | None = CLOUD_MODEL) -> dict[str, str]:
    """The router's ``cloud_aliases``: every family name → ``hub_model`` (or its own hub model when None)."""
    return {name: hub_model or target for name, target in CLOUD_FAMILIES.items()}


def local_aliases(local_model: str) -> dict[str, str]:
    """The router's ``local_aliases``: ``glm-small`` → the agent's main model."""
    return {LOCAL_SMALL: local_model}
