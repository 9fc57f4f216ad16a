"""A TCP proxy the harness controls: pass, delay, drop or blackhole the bytes between two ends.

    proxy = FaultProxy("127.0.0.1", upstream_port)
    await proxy.start()                  # proxy.port: connect here instead of upstream
    proxy.set_mode("blackhole")          # bytes vanish both ways; connections stay open
    proxy.set_mode("drop")               # open connections are reset; new ones are refused
    proxy.set_mode("delay", delay_s=0.3) # every chunk waits 0.3 s (each way)
    proxy.set_mode("pass")
    await proxy.close()

It sits between a site's leaf node and the hub side (a partition), between hub workers and NATS
(a slow hub), or in front of the OTLP collector (collector down).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Literal

log = logging.getLogger("openautoglm.sim.proxy")

__all__ = ["FaultProxy", "ProxyMode"]

ProxyMode = Literal["pass", "delay", "drop", "blackhole"]
#: Bytes read per chunk; one chunk is delayed or dropped as a whole.
_CHUNK = 65536


class FaultProxy:
    """Forwards TCP connections from ``port`` to ``upstream`` (see the module docstring)."""

    def __init__(self, host: str, upstream_port: int, *, name: str = "proxy") -> None:
        self.host = host
        self.upstream_port = upstream_port
        self.name = name
        self.mode: ProxyMode = "pass"
        self.delay_s = 0.0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        """Listen on a free port of ``host``."""
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def set_mode(self, mode: ProxyMode, *, delay_s: float = 0.0) -> None:
        """Change what happens to the bytes; ``drop`` also resets every open connection."""
        self.mode, self.delay_s = mode, delay_s
        log.info("%s: %s%s", self.name, mode, f" {delay_s:g} s" if mode == "delay" else "")
        if mode == "drop":
            for writer in list(self._writers):
                writer.transport.abort()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "drop":
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        pair = (
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        )
        self._pipes.update(pair)
        try:
            await asyncio.wait(pair, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pair:
                task.cancel()
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()
            self._pipes.difference_update(pair)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(_CHUNK):
                if self.mode == "blackhole":
                    continue
                if self.mode == "drop":
                    return
                if self.mode == "delay" and self.delay_s > 0:
                    # A delay line, not a slow link: every chunk arrives delay_s later, in order.
                    asyncio.get_running_loop().call_later(self.delay_s, _write, writer, data)
                    continue
                writer.write(data)
                await writer.drain()

    async def close(self) -> None:
        """Stop listening and cut every connection."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._pipes):
            task.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)


def _write(writer: asyncio.StreamWriter, data: bytes) -> None:
    if not writer.transport.is_closing():
        writer.write(data)
