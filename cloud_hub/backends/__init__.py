"""Model back-ends of the hub, and :func:`build_backend` to make one from a config entry."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from cloud_hub.backends.base import Backend, BackendEvent, RequestContext
from cloud_hub.errors import HubError
from cloud_hub.settings import HubModelSpec, HubSettings
from shared.telemetry import Instruments
from shared.telemetry.batching import BatchObserver

log = logging.getLogger("cloud_hub.serving")

#: llama.cpp's limit on sequences in one context (``LLAMA_MAX_SEQ``).
MAX_SLOTS = 256


def build_backend(
    spec: HubModelSpec, *, request_timeout_s: float = 300.0, slots: int = 4
) -> Backend:
    """Create (not yet start) the back-end a model spec names; imports only what it needs.

    ``slots``: requests a GGUF model decodes together (the hub's ``concurrency``).
    """
    if spec.backend == "echo":
        from cloud_hub.backends.echo import EchoBackend

        return EchoBackend(spec.name, delay_s=spec.echo_delay_s)
    if spec.backend == "gguf":
        from cloud_hub.backends.gguf import GgufBackend

        return GgufBackend(
            spec.name,
            path=spec.path,
            n_ctx=spec.n_ctx,
            n_gpu_layers=spec.n_gpu_layers,
            n_threads=spec.n_threads,
            slots=slots,
        )
    if spec.backend == "onnx":
        from cloud_hub.backends.onnx import OnnxBackend

        assert spec.path is not None  # checked by HubModelSpec
        return OnnxBackend(spec.name, path=spec.path, providers=spec.providers, labels=spec.labels)
    from cloud_hub.backends.openai_upstream import OpenAIUpstreamBackend

    assert spec.base_url is not None  # checked by HubModelSpec
    return OpenAIUpstreamBackend(
        spec.name,
        base_url=spec.base_url,
        api_key_env=spec.api_key_env,
        upstream_model=spec.upstream_model,
        timeout_s=request_timeout_s,
    )


__all__ = ["Backend", "BackendEvent", "RequestContext", "build_backend", "start_backends"]


async def start_backends(
    settings: HubSettings, given: Mapping[str, Backend], *, metrics: Instruments | None = None
) -> dict[str, Backend]:
    """Start ``given`` back-ends, or build and start the configured ones when none are given.

    A batched back-end (GGUF) reports its ``agl.batch.*`` figures to ``metrics``.
    """
    backends = dict(given) or {
        spec.name: build_backend(
            spec,
            request_timeout_s=settings.request_timeout_s,
            slots=min(settings.concurrency, MAX_SLOTS),
        )
        for spec in settings.models
    }
    if not backends:
        raise HubError("no models configured; add a [[models]] table to the config file")
    for backend in backends.values():
        await backend.start()
        observe = getattr(backend, "observe", None)
        if observe is not None and metrics is not None:
            observe(BatchObserver(metrics, backend.name))
        if getattr(backend, "is_stand_in", False):
            log.warning("model %s uses the ECHO back-end (a test stand-in)", backend.name)
    return backends
