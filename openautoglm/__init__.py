"""The all-in-one launcher: embedded NATS, a hub and an edge agent in one process.

This is the only product package that imports both ``edge_agent`` and ``cloud_hub``.
"""

__version__ = "0.1.0"
