"""Real nats-server processes for tests and benchmarks (see ``shared.embedded_nats``)."""

from shared.embedded_nats import NatsServer, embedded_nats, free_port, nats_server_binary

nats_server = embedded_nats

__all__ = ["NatsServer", "free_port", "nats_server", "nats_server_binary"]
