"""Code both the edge agent and the hub use.

The wire protocol (``protocol``), router reasons (``reasons``), errors, model runtimes
(``runtimes``), the Wasm plugin host (``plugins``), telemetry, settings files and the embedded
nats-server helper. Nothing here imports ``edge_agent`` or ``cloud_hub``.
"""
