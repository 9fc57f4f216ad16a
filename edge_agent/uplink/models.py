"""The hub's models and their capabilities, asked for on ``agl.v1.dev.<device>.models``.

The uplink fetches them when it connects and again on every reconnect (a hub may have been
redeployed with other models); the router reads them to pick a hub model for a request that
needs a capability (``shared.capabilities``).
"""

from __future__ import annotations

import logging

import nats.errors
from nats.aio.client import Client
from pydantic import ValidationError

from shared.capabilities import ModelInfo, ModelsReply
from shared.protocol import models_subject

log = logging.getLogger(__name__)

__all__ = ["fetch_models"]


async def fetch_models(nc: Client, device: str, *, timeout: float = 5.0) -> list[ModelInfo] | None:
    """The hub's models, or None when no hub answered (or answered something unreadable)."""
    subject = models_subject(device)
    try:
        msg = await nc.request(subject, b"", timeout=timeout)
        reply = ModelsReply.model_validate_json(msg.data)
    except (nats.errors.Error, TimeoutError) as exc:
        log.warning("hub link: no answer on %s (%s); hub model capabilities unknown", subject, exc)
        return None
    except ValidationError as exc:
        log.warning("hub link: unreadable models reply on %s: %s", subject, exc)
        return None
    log.info(
        "hub link: hub serves %s",
        ", ".join(f"{m.name} ({'/'.join(m.capabilities) or '-'})" for m in reply.models)
        or "no models",
    )
    return list(reply.models)
