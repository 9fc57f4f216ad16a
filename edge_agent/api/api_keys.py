"""HTTP API keys, as ``llama-server --api-key`` does: ``Authorization: Bearer KEY`` or a 401.

    app.add_middleware(ApiKeyMiddleware, keys=settings.api_keys)   # no keys: nothing checked
    problem = bind_refusal("0.0.0.0", keys=[], insecure=False)      # why not to listen there

Health and readiness probes and the Prometheus scrape (``/healthz``, ``/readyz``, ``/metrics``)
stay open, so that orchestrators and scrapers need no key. Keys are compared in constant time.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["OPEN_PATHS", "ApiKeyMiddleware", "bind_refusal", "is_loopback"]

#: Paths answered without a key.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_refusal(host: str, *, keys: Sequence[object], insecure: bool) -> str | None:
    """Why the agent must not listen on ``host`` (None: it may).

    Listening beyond loopback without API keys hands the models to anyone on the network,
    so it needs keys or an explicit ``--insecure-no-auth``.
    """
    if keys or insecure or is_loopback(host):
        return None
    return (
        f"refusing to listen on {host} without API keys: anyone who reaches the port could use "
        "the models. Set api_keys (AGL_API_KEYS=key1,key2) so clients must send "
        "`Authorization: Bearer KEY`, or pass --insecure-no-auth (insecure_no_auth = true) "
        "if a firewall or network policy already limits who connects"
    )


def _unauthorized(detail: str) -> bytes:
    return json.dumps(
        {
            "error": {
                "message": detail,
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
        }
    ).encode()


class ApiKeyMiddleware:
    """Answers 401 (OpenAI's error shape) unless the request carries one of ``keys``."""

    def __init__(self, app: ASGIApp, *, keys: Sequence[str]) -> None:
        self.app = app
        self._keys = [k.encode() for k in keys]

    def _allowed(self, scope: Scope) -> str | None:
        """None when allowed, else what is wrong."""
        header = next((v for k, v in scope.get("headers", ()) if k == b"authorization"), None)
        if header is None:
            return "missing API key; send `Authorization: Bearer YOUR_KEY`"
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            return "the Authorization header must be `Bearer YOUR_KEY`"
        token = token.strip()
        # Every key is compared, so the time taken does not tell which one nearly matched.
        matched = [hmac.compare_digest(token, key) for key in self._keys]
        return None if any(matched) else "invalid API key"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._keys or scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        problem = self._allowed(scope)
        if problem is None:
            await self.app(scope, receive, send)
            return
        body = _unauthorized(problem)
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="edge-agent"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
