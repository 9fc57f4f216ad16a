"""The hub's answer to ``agl.v1.dev.<device>.models``: its models, capabilities and context sizes.

Edges ask when they connect (``edge_agent.uplink.models``) and route requests that need a
capability to a model that has it. Every hub worker answers in queue group ``hub``::

    answering = await ModelsAnswer.start(nc, settings, backends)   # …; await answering.stop()
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from cloud_hub.backends import Backend
from cloud_hub.settings import HubModelSpec, HubSettings
from shared.capabilities import ModelInfo, ModelsReply
from shared.protocol import MODELS_WILDCARD, QUEUE_GROUP

__all__ = ["ModelsAnswer", "model_infos"]

_CAN: dict[str, list[str]] = {
    "gguf": ["tools", "json_schema", "logprobs"],
    "openai": ["tools", "json_schema"],
}


def _info(name: str, kinds: frozenset[str], spec: HubModelSpec | None) -> ModelInfo:
    if spec is None:
        return ModelInfo(name=name, kinds=sorted(kinds))
    can = spec.capabilities if spec.capabilities is not None else _CAN.get(spec.backend, [])
    return ModelInfo(
        name=name,
        kinds=sorted(kinds),
        capabilities=list(can),
        context=spec.n_ctx if spec.backend == "gguf" else 0,
    )


def model_infos(settings: HubSettings, backends: Mapping[str, Backend]) -> list[ModelInfo]:
    """What the hub advertises: one entry per served model (settings override the backend)."""
    specs = {m.name: m for m in settings.models}
    return [_info(n, backends[n].kinds, specs.get(n)) for n in sorted(backends)]


class ModelsAnswer:
    """Answers ``agl.v1.dev.*.models`` with a ``ModelsReply`` until :meth:`stop`."""

    def __init__(self, sub: Subscription) -> None:
        self._sub = sub

    @classmethod
    async def start(
        cls, nc: Client, settings: HubSettings, backends: Mapping[str, Backend]
    ) -> ModelsAnswer:
        """Subscribe (queue group ``hub``) and answer every request with the same reply."""
        body = ModelsReply(models=model_infos(settings, backends)).model_dump_json().encode()

        async def on_request(msg: Msg) -> None:
            if msg.reply:
                await nc.publish(msg.reply, body)

        return cls(await nc.subscribe(MODELS_WILDCARD, queue=QUEUE_GROUP, cb=on_request))

    async def stop(self) -> None:
        """Stop answering."""
        with contextlib.suppress(Exception):
            await self._sub.unsubscribe()
