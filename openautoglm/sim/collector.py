"""A stand-in OTLP/HTTP collector for the simulator: accepts every POST with 200, counts them.

    sink = CollectorSink(); await sink.start(); sink.port; sink.posts; await sink.close()

It stands in for an OpenTelemetry collector so that ``collector_down`` can take one away (through
a :class:`~openautoglm.sim.proxy.FaultProxy`) and show that requests do not notice.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["CollectorSink"]

_MAX_BODY = 16 * 1024 * 1024


class CollectorSink:
    """A minimal HTTP/1.1 server that answers ``200`` with an empty protobuf body."""

    def __init__(self) -> None:
        self.port = 0
        self.posts = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen on a free loopback port."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, ValueError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = min(int(value.strip()), _MAX_BODY)
                await reader.readexactly(length)
                self.posts += 1
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\n"
                    b"Content-Length: 0\r\n\r\n"
                )
                await writer.drain()
        writer.close()

    async def close(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
