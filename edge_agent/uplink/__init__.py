"""The edge agent's link to the cloud hub over NATS: client, circuit breaker, token budget."""

from edge_agent.uplink.breaker import CircuitBreaker
from edge_agent.uplink.budget import TokenBudget
from edge_agent.uplink.client import Uplink
from edge_agent.uplink.errors import CloudFailed, CloudUnavailable, UplinkError

__all__ = [
    "CircuitBreaker",
    "CloudFailed",
    "CloudUnavailable",
    "TokenBudget",
    "Uplink",
    "UplinkError",
]
