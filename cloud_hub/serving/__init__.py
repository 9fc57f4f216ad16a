"""The hub's NATS inference service, split by job.

Modules: ``admission`` (pure: accept or refuse a request), ``replies`` (framing results,
chunks and error replies), ``answering`` (one request's task: back-end, replies, span),
``connection`` (the hub's NATS connection), ``interest`` (stopping work nobody waits for), ``service`` (:class:`HubService`: ``nats.micro``
endpoints, cancels, drain; :func:`running_hub`) and ``runner`` (:func:`serve`: the process,
with signals, telemetry and ``/metrics``).
"""

from cloud_hub.serving.answering import FinishedRequest
from cloud_hub.serving.runner import serve
from cloud_hub.serving.service import HubService, running_hub

__all__ = ["FinishedRequest", "HubService", "running_hub", "serve"]
