"""The agent's gRPC server: one ``grpc.aio`` server on the agent's event loop.

    server = await start_grpc_server(state)     # binds settings.host:settings.grpc_port
    server.port                                 # the bound port (grpc_port 0 picks a free one)
    await server.stop()

It serves ``inference.GRPCInferenceService`` (KServe v2), ``agl.v1.Chat``, ``grpc.health.v1.Health``
(``""`` and each service: NOT_SERVING while models load, then SERVING) and server reflection.
Messages larger than ``grpc_max_message_bytes`` are refused by gRPC itself (RESOURCE_EXHAUSTED).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from edge_agent.api.state import AgentState
from edge_agent.errors import EdgeError
from edge_agent.grpc.chat import ChatService
from edge_agent.grpc.kserve import InferenceService
from shared.proto import grpc_predict_v2_pb2, grpc_predict_v2_pb2_grpc
from shared.proto.agl.v1 import chat_pb2, chat_pb2_grpc
from shared.tasks import stop_tasks

log = logging.getLogger("edge_agent.grpc")

__all__ = ["MAX_CONCURRENT_RPCS", "GrpcServer", "start_grpc_server"]

#: Calls in flight at once; more are refused with RESOURCE_EXHAUSTED. Generation has its own
#: bound (the scheduler's queue); this one bounds cheap calls (health, metadata) too.
MAX_CONCURRENT_RPCS = 256
#: How long stopping waits for calls in flight.
STOP_GRACE_S = 5.0

SERVICES = (
    grpc_predict_v2_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
    chat_pb2.DESCRIPTOR.services_by_name["Chat"].full_name,
)


class GrpcServer:
    """A started gRPC server and the task that reports readiness to the health service."""

    def __init__(self, server: grpc.aio.Server, port: int, watcher: asyncio.Task[None]) -> None:
        self._server = server
        self.port = port
        self._watcher = watcher

    async def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Refuse new calls, let calls in flight finish for ``grace_s``, then cancel them."""
        await stop_tasks([self._watcher])
        await self._server.stop(grace_s)


async def start_grpc_server(state: AgentState) -> GrpcServer:
    """Bind ``settings.host:settings.grpc_port`` and start serving."""
    settings = state.settings
    assert settings.grpc_port is not None
    limit = settings.grpc_max_message_bytes
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
        ],
        maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS,
    )
    # The generated add_* functions carry no annotations.
    grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(  # type: ignore[no-untyped-call]
        InferenceService(state), server
    )
    chat_pb2_grpc.add_ChatServicer_to_server(ChatService(state), server)  # type: ignore[no-untyped-call]
    checker: Any = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    reflection.enable_server_reflection(
        (*SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    cause = ""
    try:
        port = server.add_insecure_port(f"{host}:{settings.grpc_port}")
    except RuntimeError as exc:
        port, cause = 0, f" ({exc})"
    if not port:
        raise EdgeError(
            f"cannot listen for gRPC on {settings.host}:{settings.grpc_port}{cause}; "
            "pick another --grpc-port"
        )
    await server.start()
    watcher = asyncio.create_task(_report_health(state, checker), name="agl-grpc-health")
    log.info("gRPC API on %s:%d", settings.host, port)
    return GrpcServer(server, port, watcher)


async def _report_health(state: AgentState, checker: Any) -> None:
    """NOT_SERVING while the models load, then SERVING (or NOT_SERVING if loading failed)."""
    for name in ("", *SERVICES):
        await checker.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    while state.registry.state == "loading":
        await asyncio.sleep(0.1)
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if state.registry.state == "ready"
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ("", *SERVICES):
        await checker.set(name, status)
