"""Wiring of the Batch API into the agent: the store, the service and the loops.

    runtime = await start_batches(state)      # in the lifespan; None when batches are off
    ...
    await runtime.close()

The seams the batch package needs from the request path live here: turning a line's body into
the hub's request (the same validation as ``/v1/chat/completions``), running an ``edge`` line
on the local model through :func:`run_job` (routed, filtered by plugins, traced), and telling
whether the device is idle (no interactive request waiting or running).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import nats
from nats.aio.client import Client

from edge_agent.api.answer import run_job
from edge_agent.api.formatter import json_answer
from edge_agent.api.http_io import error_payload, parse_body
from edge_agent.api.jobs import Job, chat_job, completion_job
from edge_agent.api.prompt import check_message_count
from edge_agent.api.schemas import ChatCompletionRequest, CompletionRequest
from edge_agent.api.state import AgentState
from edge_agent.batches.loops import BatchLoops
from edge_agent.batches.service import BatchService
from edge_agent.batches.store import BatchStore, store_error
from edge_agent.errors import ApiError
from edge_agent.execute.cloud import infer_request
from edge_agent.router.decide import cloud_model_for
from shared.protocol import InferRequest
from shared.reasons import Tier

log = logging.getLogger("edge_agent.batches")

__all__ = ["BatchRuntime", "start_batches"]


@dataclass
class BatchRuntime:
    """The running Batch API of one agent."""

    nc: Client
    service: BatchService
    loops: BatchLoops

    async def close(self) -> None:
        """Stop the loops and the connection (all state is in JetStream)."""
        await self.loops.stop()
        await self.nc.close()


def _job(state: AgentState, endpoint: str, body: dict[str, Any]) -> Job:
    if endpoint == "/v1/chat/completions":
        messages = body.get("messages")
        if isinstance(messages, list):
            check_message_count(state, len(messages))
        return chat_job(parse_body(ChatCompletionRequest, body))
    return completion_job(parse_body(CompletionRequest, body))


def _line_request(state: AgentState) -> Any:
    def line_request(endpoint: str, body: dict[str, Any]) -> InferRequest:
        if body.get("stream"):
            raise ApiError(400, "batch lines cannot stream; drop stream: true", param="stream")
        job = _job(state, endpoint, body)
        return infer_request(
            device=state.settings.device_id,
            model=cloud_model_for(job.model, state.settings.router),
            kind=job.kind,
            messages=job.messages,
            prompt=job.prompt_text,
            params=job.cloud_params(),
            stream=False,
        )

    return line_request


def _run_local(state: AgentState) -> Any:
    async def run_local(endpoint: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        try:
            started = await run_job(state, _job(state, endpoint, body), tier_header=Tier.EDGE)
            return 200, await json_answer(started.events, started.format)
        except ApiError as exc:
            return exc.status, error_payload(exc)

    return run_local


def idle(state: AgentState) -> bool:
    """No interactive request waits or runs on any local model (and the models are loaded)."""
    return state.registry.state == "ready" and not any(state.queue_depths().values())


def _credentials(settings: Any) -> str | None:
    creds = getattr(settings.hub, "credentials", None)  # operator mode (issue 9)
    return None if creds is None else str(creds)


async def start_batches(state: AgentState) -> BatchRuntime | None:
    """Connect to the site's leaf and start the Batch API; None when it is not configured."""
    settings = state.settings
    cfg = settings.batches
    if cfg.leaf_domain is None or not settings.hub.nats_url:
        return None
    servers = [u.strip() for u in settings.hub.nats_url.split(",") if u.strip()]
    try:
        nc = await nats.connect(
            servers,
            name="edge-agent-batches",
            max_reconnect_attempts=-1,
            inbox_prefix=f"_INBOX.{settings.device_id}".encode(),  # the device's own replies
            user_credentials=_credentials(settings),
        )
        js = nc.jetstream(domain=cfg.leaf_domain)
        store = BatchStore(js, device=settings.device_id)
        await store.setup()
    except Exception as exc:
        raise store_error(exc, "set up the batch store") from exc
    service = BatchService(
        store, device=settings.device_id, settings=cfg, line_request=_line_request(state)
    )

    def cloud_allowed() -> bool:  # the breaker and the budget agree
        return state.uplink is not None and state.uplink.available()

    loops = BatchLoops(
        service,
        nc,
        domain=cfg.leaf_domain,
        hub_domain=cfg.hub_domain,
        run_local=_run_local(state),
        idle=lambda: idle(state),
        load=lambda: sum(state.queue_depths().values()),
        cloud_allowed=cloud_allowed,
    )
    loops.start()
    log.info("batch API on: lines wait in JetStream domain %s", cfg.leaf_domain)
    return BatchRuntime(nc, service, loops)
