"""The agent's gRPC API, next to REST on its own port (``grpc_port``).

    server = await start_grpc_server(state)     # from the app's lifespan
    ...
    await server.stop()

Services: the Open Inference Protocol (KServe v2, ``inference.GRPCInferenceService``) for the
ONNX models, ``agl.v1.Chat`` (``Complete``, ``Stream``) for chat, standard health checking and
server reflection. Every call takes the same path as its REST twin (``run_job``,
``classify_rows``), so tier, reason, plugins and admission apply alike.
"""

from edge_agent.grpc.server import GrpcServer, start_grpc_server

__all__ = ["GrpcServer", "start_grpc_server"]
