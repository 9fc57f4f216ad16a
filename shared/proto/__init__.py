"""gRPC protocols and their generated code (committed; ``scripts/gen_protos.py`` rewrites it).

grpc_predict_v2.proto   the Open Inference Protocol (KServe v2), package ``inference``
agl/v1/chat.proto       the agent's chat service, package ``agl.v1``
"""
