"""The HTTP/1.1 protocol the agent serves with: uvicorn's httptools parser, with bounds.

- The request line plus headers may hold at most ``max_header_bytes`` (431 above); httptools
  itself has no such limit, so 1 MB of headers would otherwise be read and kept.
- Requests the parser refuses (a malformed ``Content-Length`` …) get OpenAI's error shape in
  JSON, like every other error of the agent, instead of uvicorn's plain text.
- HTTP/1.0 clients know no chunked transfer coding, which uvicorn uses for every answer without a
  ``Content-Length`` (SSE streams): they get the body as it comes, ended by closing the
  connection (``connection: close``), as HTTP/1.0 delimits bodies.

    uvicorn.Config(app, http=bounded_http_protocol(settings.max_header_bytes))
"""

from __future__ import annotations

import json
from typing import Any

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

__all__ = ["bounded_http_protocol"]

_REASONS = {400: b"Bad Request", 431: b"Request Header Fields Too Large"}


class _Http10Cycle(RequestResponseCycle):
    """A response to an HTTP/1.0 request: unframed when it has no ``Content-Length``."""

    _unframed = False

    async def send(self, message: ASGISendEvent) -> None:
        if message["type"] == "http.response.start" and not self.response_started:
            headers = list(message.get("headers", []))
            if not any(k.lower() in (b"content-length", b"transfer-encoding") for k, _ in headers):
                self._unframed = True
                self.chunked_encoding = False  # uvicorn would add transfer-encoding: chunked
        elif (
            self._unframed
            and message["type"] == "http.response.body"
            and self.response_started
            and not self.response_complete
        ):
            self.transport.write(message.get("body", b""))
            if not message.get("more_body", False):  # the body ends where the connection does
                self.response_complete = True
                self.message_event.set()
                self.transport.close()
                self.on_response()
            return
        await super().send(message)


class _BoundedHttpToolsProtocol(HttpToolsProtocol):
    max_header_bytes = 65_536

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_bytes = 0
        self._too_large = False

    def on_message_begin(self) -> None:
        self._header_bytes = 0
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and self.scope.get("http_version") == "1.0":
            cycle.__class__ = _Http10Cycle  # before its ASGI task first runs

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > self.max_header_bytes:
            self._too_large = True
            raise ValueError("request headers too large")  # httptools reports a parser error

    def send_400_response(self, msg: str) -> None:
        if self._too_large:
            status, message, code = (
                431,
                f"the request line and headers exceed {self.max_header_bytes} bytes "
                "(setting max_header_bytes)",
                "headers_too_large",
            )
        else:
            status, message, code = (
                400,
                "the HTTP request is malformed (bad request line, header or Content-Length)",
                "bad_http_request",
            )
        body = json.dumps(
            {
                "error": {
                    "message": message,
                    "type": "invalid_request_error",
                    "param": None,
                    "code": code,
                }
            }
        ).encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n" % (status, _REASONS[status], len(body)) + body
        )
        self.transport.close()


def bounded_http_protocol(max_header_bytes: int) -> type[HttpToolsProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)`` with this header limit."""
    return type(
        "BoundedHttpToolsProtocol",
        (_BoundedHttpToolsProtocol,),
        {"max_header_bytes": max_header_bytes},
    )
