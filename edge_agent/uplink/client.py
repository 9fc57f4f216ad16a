"""The edge side of the NATS link to the hub.

uplink = Uplink("nats://hub:4222", device="dev-1", credentials=Path("dev-1.creds"))
await uplink.connect()            # returns at once; connects in the background
if uplink.available():
    result = await uplink.complete(request, timeout=30)   # traceparent: the current span
    async for piece in uplink.stream(request, timeout=10, first_chunk_timeout=30):
        ...                       # str chunks, then one EndMessage
    async for msg in uplink.stream_messages(request, timeout=10, first_chunk_timeout=30):
        ...                       # ChunkMessages (text, logprobs), then one EndMessage
uplink.status()                   # connected, servers, circuit, budget (GET /status)
await uplink.close()

A link that goes down, stays down or comes back is logged (``LinkState``), never silently.
Requests go to the device's own subjects (``agl.v1.dev.<device>.…``) and replies come back to
its own inbox (``_INBOX.<device>``), so that per-device credentials can enforce identity. The
server refusing the credentials (bad, revoked) stops the connect loop with one clear error; a
subject the server refuses is logged with the credential and the subject, and not tried again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from edge_agent.uplink.backoff import reconnect_delays
from edge_agent.uplink.breaker import BreakerState, CircuitBreaker
from edge_agent.uplink.budget import TokenBudget
from edge_agent.uplink.errors import CloudFailed, CloudUnavailable
from edge_agent.uplink.link import REMINDER_S, LinkState
from edge_agent.uplink.models import fetch_models
from shared.capabilities import ModelInfo
from shared.nats_auth import auth_failure, connect_options, denied_subject
from shared.protocol import (
    PROBE_HEADER,
    TRACEPARENT_HEADER,
    ChunkMessage,
    ChunkSequencer,
    EndMessage,
    ErrorMessage,
    InferRequest,
    ProtocolError,
    ResultMessage,
    StreamGapError,
    check_payload_size,
    decode_reply,
    encode,
)
from shared.subjects import cancel_subject, heartbeat_subject, inbox_prefix, infer_subject
from shared.tasks import stop_tasks
from shared.telemetry import inject_headers

log = logging.getLogger(__name__)

# Error codes that say "the hub is fine, it just cannot take this one": no breaker failure.
_UNAVAILABLE_CODES = {"busy": "busy", "unknown_model": "unknown_model", "too_large": "too_large"}
_HEALTHY_CODES = {"bad_request", "too_large", "unknown_model", "cancelled"}


class Uplink:
    """Sends inference requests to the hub and maps every failure to a typed error."""

    def __init__(
        self,
        servers: str | list[str],
        *,
        device: str,
        breaker: CircuitBreaker | None = None,
        budget: TokenBudget | None = None,
        name: str = "edge-agent",
        connect_timeout_s: float = 2.0,
        reconnect_wait_s: float = 1.0,
        max_reconnect_wait_s: float = 30.0,
        reminder_s: float = REMINDER_S,
        credentials: Path | None = None,
        tls_ca: Path | None = None,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
    ) -> None:
        self.servers = servers
        self.device = device
        self.credentials = credentials
        # Reads the .creds file now: a malformed one is a startup error that names the file.
        self._auth = connect_options(
            credentials=credentials, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key
        )
        #: Why the server refused this device's credentials (the link then stays down).
        self.auth_error: str | None = None
        #: Subjects the server refused (permissions violations): never sent again.
        self.denied: dict[str, str] = {}
        #: Called after each reconnect (the desired-state watch is made again at once).
        self.reconnect_listeners: list[Callable[[], None]] = []
        self._closer: asyncio.Task[None] | None = None
        self._closing = False
        self._warned = False  # the one "no credentials" warning
        self.breaker = breaker or CircuitBreaker()
        self.budget = budget or TokenBudget()
        self._name = name
        self._connect_timeout_s = connect_timeout_s
        self._reconnect_wait_s = reconnect_wait_s
        self._max_reconnect_wait_s = max_reconnect_wait_s
        self._nc: Client | None = None
        self._connector: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        #: The hub's models by name, with capabilities (fetched on connect and reconnect).
        self.hub_models: dict[str, ModelInfo] = {}
        self._models_task: asyncio.Task[None] | None = None
        shown = servers if isinstance(servers, str) else ",".join(servers)
        #: Up or down, since when, the last error; logs each change (see ``LinkState``).
        self.link = LinkState(_redacted(shown), reminder_s=reminder_s)

    async def connect(self) -> None:
        """Start connecting in the background; never blocks or fails when NATS is down."""
        if self.credentials is None and not self._warned:
            self._warned = True
            log.warning(
                "hub link: no hub.credentials set; connecting to NATS without credentials "
                "(dev mode: any client on that server can claim to be device %s)",
                self.device,
            )
        self._start_connecting()

    def _start_connecting(self) -> None:
        if self._connector is None or self._connector.done():
            self._connector = asyncio.create_task(self._connect_loop(), name="uplink-connect")

    async def wait_connected(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the first connection; return whether it is up."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout)
        return self.connected

    async def _connect_loop(self) -> None:
        delays = reconnect_delays(self._reconnect_wait_s, self._max_reconnect_wait_s)
        while True:
            try:
                # Jitter spreads a fleet's reconnects after a hub-side NATS restart.
                wait = self._reconnect_wait_s * (1.0 + random.random() * 0.5)
                nc = Client()
                await _connect_or_close(
                    nc,
                    self.servers,
                    name=self._name,
                    connect_timeout=self._connect_timeout_s,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=wait,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnect,
                    reconnected_cb=self._on_reconnect,
                    closed_cb=self._on_closed,
                    inbox_prefix=inbox_prefix(self.device).encode(),
                    **self._auth,
                )
                self._nc = nc
                self._connected.set()
                self.link.up(self._url())
                self._refresh_models()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # nats raises OSError, TimeoutError, NoServersError …
                if self.auth_error is not None:
                    return
                if auth_failure(exc):
                    self._refused(exc)
                    return
                self.link.failed(_describe(exc))
                delay = next(delays)
                log.debug("NATS %s unreachable (%s); retrying in %.1f s", self.servers, exc, delay)
                await asyncio.sleep(delay)

    def _url(self) -> str:
        url = self._nc.connected_url if self._nc is not None else None
        return f"{url.hostname}:{url.port}" if url is not None else self.link.servers

    def _refused(self, exc: BaseException) -> None:
        """The server refused the credentials: say which, stop retrying, answer locally."""
        which = f"'s credentials {self.credentials}" if self.credentials else " (no credentials)"
        self.auth_error = (
            f"NATS at {self.link.servers} refused device {self.device}{which} "
            f"({_describe(exc)}); the device may be revoked or the file belongs to another "
            "server: enroll it again (`hubctl devices enroll`) and fix hub.credentials"
        )
        log.error("hub link: %s; not retrying, answering every request locally", self.auth_error)
        self.link.failed(self.auth_error)

    async def _on_error(self, exc: Exception) -> None:
        log.debug("NATS client error: %s", exc)
        denied = denied_subject(exc)
        if denied is not None:
            verb, subject = denied
            if subject not in self.denied:
                hint = (
                    f"check that hub.credentials was enrolled for device_id {self.device}; "
                    "not sending there again"
                    if subject.startswith(("agl.v1.dev.", "_inbox."))
                    else "these credentials do not allow it"
                )
                log.error(
                    "hub link: NATS refused %s to %s for device %s (%s); %s",
                    verb,
                    subject,
                    self.device,
                    self.credentials or "no credentials",
                    hint,
                )
            self.denied[subject] = verb
            return
        if auth_failure(exc) and not self.connected and self.auth_error is None:
            # nats-py would retry a refused login forever; a revoked device stays revoked.
            self._refused(exc)
            if self._connector is asyncio.current_task():
                raise _LoginRefused(str(exc))  # ends nc.connect() in the connect loop
            asyncio.get_running_loop().call_soon(self._stop_connecting)
            return
        # nats-py retries the first connection itself (max_reconnect_attempts=-1) and reports
        # each failed attempt only here; so do reconnects after a loss.
        if not self.connected and self._connector is not None:
            self.link.failed(_describe(exc))

    async def _on_disconnect(self) -> None:
        if self._connector is not None:  # not while close() shuts the link on purpose
            self.link.lost()

    def _stop_connecting(self) -> None:
        if self._connector is not None and not self._connector.done():
            self._connector.cancel()  # inside nats.connect(): its retry loop ends here
        elif self._nc is not None and not self._nc.is_closed:
            self._closer = asyncio.create_task(self._nc.close())  # a reconnect loop ends here

    async def _on_reconnect(self) -> None:
        self.link.up(self._url())
        self._refresh_models()
        for listener in self.reconnect_listeners:
            listener()

    def _refresh_models(self) -> None:
        """Fetch the hub's models and capabilities in the background (``hub_models``)."""

        async def refresh() -> None:
            nc = self._nc
            found = None if nc is None else await fetch_models(nc, self.device)
            if found is not None:
                self.hub_models = {m.name: m for m in found}

        self._models_task = asyncio.create_task(refresh(), name="uplink-models")

    async def _on_closed(self) -> None:
        # nats-py closes (no reconnect) when the server revokes the credentials; a fresh
        # connect loop then meets the refusal and reports it.
        if self._connector is not None and self.auth_error is None and not self._closing:
            # nats-py leaves the socket of a connection the server closed open (2.16).
            transport = getattr(self._nc, "_transport", None)
            with contextlib.suppress(Exception):
                if transport is not None:
                    transport.close()
            self.link.failed("the server closed the connection")
            self._start_connecting()

    async def close(self) -> None:
        """Stop connecting and close the connection."""
        self._closing = True
        if self._connector is not None:
            await stop_tasks([self._connector])
            self._connector = None
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.close()
        self._nc = None
        self._connected.clear()

    @property
    def connected(self) -> bool:
        """Whether the NATS connection is up right now."""
        return self._nc is not None and self._nc.is_connected

    @property
    def nats_client(self) -> Client | None:
        """The live NATS connection while it is up (the desired-state watcher reads KV over it)."""
        return self._nc if self.connected else None

    @property
    def circuit_state(self) -> BreakerState:
        """``open`` while the link is down (nothing can go to the hub), else the breaker's."""
        return self.breaker.state if self.connected else "open"

    def status(self) -> dict[str, Any]:
        """The link as ``GET /status`` shows it: connection, circuit, budget."""
        budget = self.budget
        return {
            **self.link.snapshot(),
            "connected": self.connected,
            "servers": self.link.servers.split(","),
            "circuit": self.circuit_state,
            "breaker": self.breaker.state,
            "available": self.available(),
            "credentials": str(self.credentials) if self.credentials else None,
            "auth_error": self.auth_error,
            "denied_subjects": sorted(self.denied),
            "budget": {
                "daily_tokens": budget.daily_tokens,
                "spent_today": budget.spent,
                "remaining_today": budget.remaining(),
            },
        }

    def server_address(self) -> tuple[str, int] | None:
        """Host and port of the NATS server the link is connected to now, if any."""
        url = self._nc.connected_url if self._nc is not None and self.connected else None
        if url is None or not url.hostname:
            return None
        return url.hostname, url.port or 4222

    async def publish_heartbeat(self, data: bytes) -> bool:
        """Publish a heartbeat on ``agl.v1.dev.<device>.hb``; False when it cannot go now."""
        nc = self._nc
        subject = heartbeat_subject(self.device)
        if nc is None or not nc.is_connected or subject.lower() in self.denied:
            return False
        try:
            await nc.publish(subject, data)
        except (nats.errors.Error, OSError) as exc:
            log.debug("heartbeat not sent: %s", exc)
            return False
        return True

    def available(self) -> bool:
        """Whether a request may go to the cloud now (connected, circuit allows, budget left)."""
        return self.connected and self.breaker.would_allow() and self.budget.has_room()

    def _admit(self, req: InferRequest) -> tuple[Client, bytes, InferRequest]:
        if req.device != self.device:  # the hub reads the device from the subject: agree with it
            req = req.model_copy(update={"device": self.device})
        nc = self._nc
        if nc is None or not nc.is_connected:
            raise CloudUnavailable(
                self.auth_error or f"not connected to NATS at {self.servers}; answering locally",
                reason="auth_refused" if self.auth_error else "not_connected",
            )
        subject = infer_subject(self.device, req.model)
        if self.denied and subject.lower() in self.denied:
            raise CloudUnavailable(
                f"NATS refused this device's credentials ({self.credentials}) publishing to "
                f"{subject}; enroll device {self.device} and set hub.credentials to its file",
                reason="permission_denied",
            )
        if not self.budget.has_room():
            raise CloudUnavailable(
                f"today's cloud token budget ({self.budget.daily_tokens}) is spent; "
                "raise it in the config or wait for tomorrow (UTC)",
                reason="budget_spent",
            )
        data = encode(req)
        try:
            check_payload_size(data, nc.max_payload)
        except ProtocolError as exc:
            raise CloudUnavailable(str(exc), reason="too_large") from exc
        if not self.breaker.allow():
            raise CloudUnavailable(
                f"circuit to the hub is open after {self.breaker.failure_threshold} failures; "
                f"retrying after {self.breaker.cooldown_s:g} s",
                reason="circuit_open",
            )
        return nc, data, req

    @staticmethod
    def _headers(traceparent: str | None) -> dict[str, str] | None:
        # An explicit traceparent wins; otherwise the current span's context (W3C
        # traceparent/tracestate via the OTel propagator) so the hub's span joins the trace.
        if traceparent:
            return {TRACEPARENT_HEADER: traceparent}
        return dict(inject_headers({})) or None

    def _error_reply(self, msg: ErrorMessage, *, tokens_sent: bool) -> Exception:
        if msg.code in _HEALTHY_CODES:
            self.breaker.release_probe()
        else:
            self.breaker.record_failure()
        reason = _UNAVAILABLE_CODES.get(msg.code)
        text = f"hub answered {msg.code}: {msg.message}"
        if reason is not None and not tokens_sent:
            return CloudUnavailable(text, reason=reason)
        return CloudFailed(text, tokens_sent=tokens_sent, code=msg.code)

    def _fail(self, message: str, *, tokens_sent: bool, code: str) -> CloudFailed:
        self.breaker.record_failure()
        return CloudFailed(message, tokens_sent=tokens_sent, code=code)

    async def complete(
        self, req: InferRequest, *, timeout: float, traceparent: str | None = None
    ) -> ResultMessage:
        """Send a non-streaming request and wait up to ``timeout`` s for the whole answer."""
        nc, data, req = self._admit(req)
        subject = infer_subject(self.device, req.model)
        try:
            msg = await nc.request(
                subject, data, timeout=timeout, headers=self._headers(traceparent)
            )
        except nats.errors.NoRespondersError:
            self.breaker.record_failure()
            raise CloudUnavailable(
                f"no hub serves model {req.model!r} (no responders on {subject})",
                reason="no_responders",
            ) from None
        except nats.errors.TimeoutError:
            with contextlib.suppress(Exception):
                await nc.publish(cancel_subject(self.device, req.id))
            raise self._fail(
                f"hub did not answer within {timeout:g} s", tokens_sent=False, code="timeout"
            ) from None
        except (nats.errors.Error, OSError) as exc:
            raise self._fail(f"NATS request failed: {exc}", tokens_sent=False, code="nats") from exc
        try:
            reply = decode_reply(msg.data)
        except ProtocolError as exc:
            raise self._fail(
                f"hub sent a bad reply: {exc}", tokens_sent=False, code="protocol"
            ) from exc
        if isinstance(reply, ResultMessage):
            self.breaker.record_success()
            self.budget.charge(reply.usage.total_tokens)
            return reply
        if isinstance(reply, ErrorMessage):
            raise self._error_reply(reply, tokens_sent=False)
        raise self._fail(
            f"hub sent a {reply.type} message to a non-streaming request",
            tokens_sent=False,
            code="protocol",
        )

    async def stream_messages(
        self,
        req: InferRequest,
        *,
        timeout: float,
        first_chunk_timeout: float,
        traceparent: str | None = None,
    ) -> AsyncGenerator[ChunkMessage | EndMessage, None]:
        """Stream an answer: yields whole :class:`ChunkMessage` s, then the :class:`EndMessage`.

        Chunks carry ``logprobs`` when ``req.params.logprobs`` asked for them (see
        :func:`shared.protocol.token_pieces`). ``first_chunk_timeout`` bounds the wait for the
        first message, ``timeout`` each later one. Leaving the loop early (``aclose()``,
        ``break``, cancellation) cancels the request on the hub.
        """
        nc, data, req = self._admit(req)
        if not req.stream:
            req = req.model_copy(update={"stream": True})
            data = encode(req)
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        sequencer = ChunkSequencer()
        done = False
        try:
            await nc.publish(
                infer_subject(self.device, req.model),
                data,
                reply=inbox,
                headers=self._headers(traceparent),
            )
            while True:
                got_any = sequencer.chunks > 0
                wait = timeout if got_any else first_chunk_timeout
                try:
                    msg = await _next_reply(sub, wait)
                except nats.errors.TimeoutError:
                    raise self._fail(
                        f"hub sent nothing for {wait:g} s"
                        + (" mid-stream; it may have died" if got_any else ""),
                        tokens_sent=got_any,
                        code="timeout",
                    ) from None
                reply = self._stream_reply(msg, req, sequencer)
                if isinstance(reply, EndMessage):
                    done = True
                    self.breaker.record_success()
                    self.budget.charge(reply.usage.total_tokens)
                    yield reply
                    return
                yield reply
        finally:
            if not done:
                self.breaker.release_probe()
                with contextlib.suppress(Exception):
                    await nc.publish(cancel_subject(self.device, req.id))
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def stream(
        self,
        req: InferRequest,
        *,
        timeout: float,
        first_chunk_timeout: float,
        traceparent: str | None = None,
    ) -> AsyncGenerator[str | EndMessage, None]:
        """Like :meth:`stream_messages`, but yields the chunks' texts (never empty ones)."""
        messages = self.stream_messages(
            req, timeout=timeout, first_chunk_timeout=first_chunk_timeout, traceparent=traceparent
        )
        async with contextlib.aclosing(messages):
            async for msg in messages:
                if isinstance(msg, EndMessage):
                    yield msg
                elif msg.text:
                    yield msg.text

    def _stream_reply(
        self, msg: Msg, req: InferRequest, sequencer: ChunkSequencer
    ) -> ChunkMessage | EndMessage:
        got_any = sequencer.chunks > 0
        if not msg.data and msg.headers and msg.headers.get("Status") == "503":
            self.breaker.record_failure()
            raise CloudUnavailable(
                f"no hub serves model {req.model!r} (no responders)", reason="no_responders"
            )
        try:
            reply = decode_reply(msg.data)
        except ProtocolError as exc:
            raise self._fail(
                f"hub sent a bad message: {exc}", tokens_sent=got_any, code="protocol"
            ) from exc
        if isinstance(reply, ErrorMessage):
            raise self._error_reply(reply, tokens_sent=got_any)
        if not isinstance(reply, ChunkMessage | EndMessage):
            raise self._fail(
                "hub sent a result message to a streaming request",
                tokens_sent=got_any,
                code="protocol",
            )
        try:
            sequencer.feed(reply)
        except StreamGapError as exc:
            raise self._fail(str(exc), tokens_sent=got_any, code="gap") from exc
        return reply


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _redacted(servers: str) -> str:
    """Server URLs without user names, passwords or tokens, for logs and ``/status``."""
    return ",".join(re.sub(r"//[^/@]*@", "//", u.strip()) for u in servers.split(","))


class _LoginRefused(Exception):
    """The server refused the credentials: stop nats-py's retry loop."""


async def _connect_or_close(nc: Client, servers: str | list[str], **options: Any) -> None:
    """``nc.connect``; a connect that fails or is cancelled closes ``nc`` (nats-py would leak
    its socket otherwise)."""
    try:
        await nc.connect(servers, **options)
    except BaseException:
        with contextlib.suppress(Exception):
            await nc.close()
        raise


async def _next_reply(sub: Subscription, wait: float) -> Msg:
    """The next message that is not a hub's interest probe, within ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        msg = await sub.next_msg(timeout=max(deadline - time.monotonic(), 0.001))
        if not (msg.headers and msg.headers.get(PROBE_HEADER)):
            return msg
