"""Real receivers for telemetry tests: OTLP/HTTP (protobuf) and Loki's push API (JSON).

Both are small ``http.server`` servers on a free loopback port, run in a thread, and keep
what they decoded for assertions. ``SilentServer`` accepts connections and never answers.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue


def any_value(value: AnyValue) -> Any:
    """A protobuf ``AnyValue`` as a Python value."""
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attrs(value.kvlist_value.values)
    return getattr(value, kind) if kind else None


def attrs(kvs: Any) -> dict[str, Any]:
    """Protobuf ``KeyValue`` list as a dict."""
    out: dict[str, Any] = {}
    kv: KeyValue
    for kv in kvs:
        out[kv.key] = any_value(kv.value)
    return out


@dataclass
class ReceivedSpan:
    """One decoded span with its resource attributes."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: dict[str, Any]
    resource: dict[str, Any]


@dataclass
class OtlpReceiver:
    """What an OTLP/HTTP receiver got, decoded."""

    url: str
    spans: list[ReceivedSpan] = field(default_factory=list)
    metric_names: set[str] = field(default_factory=set)
    metric_resources: list[dict[str, Any]] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, check: Callable[[], bool], timeout: float = 15.0) -> bool:
        """Poll ``check`` until it is true or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if check():
                    return True
            time.sleep(0.05)
        return False

    def _traces(self, body: bytes) -> bytes:
        req = ExportTraceServiceRequest.FromString(body)
        with self.lock:
            for rs in req.resource_spans:
                resource = attrs(rs.resource.attributes)
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        self.spans.append(
                            ReceivedSpan(
                                name=s.name,
                                trace_id=s.trace_id.hex(),
                                span_id=s.span_id.hex(),
                                parent_span_id=s.parent_span_id.hex(),
                                kind=s.kind,
                                attributes=attrs(s.attributes),
                                resource=resource,
                            )
                        )
        return ExportTraceServiceResponse().SerializeToString()

    def _metrics(self, body: bytes) -> bytes:
        req = ExportMetricsServiceRequest.FromString(body)
        with self.lock:
            for rm in req.resource_metrics:
                self.metric_resources.append(attrs(rm.resource.attributes))
                for sm in rm.scope_metrics:
                    self.metric_names.update(m.name for m in sm.metrics)
        return ExportMetricsServiceResponse().SerializeToString()

    def _logs(self, body: bytes) -> bytes:
        req = ExportLogsServiceRequest.FromString(body)
        with self.lock:
            for rl in req.resource_logs:
                resource = attrs(rl.resource.attributes)
                for sl in rl.scope_logs:
                    for rec in sl.log_records:
                        self.logs.append(
                            {
                                "body": any_value(rec.body),
                                "severity": rec.severity_text,
                                "trace_id": rec.trace_id.hex(),
                                "span_id": rec.span_id.hex(),
                                "resource": resource,
                            }
                        )
        return ExportLogsServiceResponse().SerializeToString()


@dataclass
class LokiReceiver:
    """What a Loki push-API receiver got: (labels, parsed JSON line) pairs."""

    url: str
    lines: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def push(self, body: bytes) -> None:
        data = json.loads(body)
        with self.lock:
            for stream in data["streams"]:
                for value in stream["values"]:
                    self.lines.append((dict(stream["stream"]), json.loads(value[1])))


def _free_socket_server(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    return server


@contextmanager
def _serving(server: ThreadingHTTPServer) -> Iterator[None]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    body = handler.rfile.read(int(handler.headers.get("Content-Length", "0")))
    if handler.headers.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    return body


@contextmanager
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """An OTLP/HTTP receiver: POST /v1/traces, /v1/metrics, /v1/logs (protobuf)."""
    received: OtlpReceiver | None = None

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            assert received is not None
            decode = {
                "/v1/traces": received._traces,
                "/v1/metrics": received._metrics,
                "/v1/logs": received._logs,
            }.get(self.path)
            if decode is None:
                self.send_error(404)
                return
            reply = decode(_read_body(self))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = _free_socket_server(Handler)
    received = OtlpReceiver(url=f"http://127.0.0.1:{server.server_address[1]}")
    with _serving(server):
        yield received


@contextmanager
def loki_receiver() -> Iterator[LokiReceiver]:
    """A Loki push-API receiver: POST /loki/api/v1/push (JSON, maybe gzipped)."""
    received: LokiReceiver | None = None

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            assert received is not None
            if self.path != "/loki/api/v1/push":
                self.send_error(404)
                return
            received.push(_read_body(self))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = _free_socket_server(Handler)
    port = server.server_address[1]
    received = LokiReceiver(url=f"http://127.0.0.1:{port}/loki/api/v1/push")
    with _serving(server):
        yield received


@contextmanager
def silent_server() -> Iterator[str]:
    """A port that accepts TCP connections and never answers; yields its http:// URL."""
    sock = socket.create_server(("127.0.0.1", 0), backlog=128)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def closed_port_url() -> str:
    """An http:// URL on a loopback port nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class HangingServer:
    """Accepts connections and never answers; counts connections open at once.

    ``mark()`` starts a new count: ``peak`` is then the most connections opened after the
    mark that were open at the same time (1 means one after another).
    """

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._lock = threading.Lock()
        self._marked = False
        self._open_new = 0
        self.peak = 0
        self.accepted = 0
        self._conns: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def mark(self) -> None:
        with self._lock:
            self._marked, self._open_new, self.peak = True, 0, 0

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                if self._closed:  # accepted while close() ran: it would never be closed
                    conn.close()
                    return
                self.accepted += 1
                self._conns.append(conn)
                new = self._marked
                if new:
                    self._open_new += 1
                    self.peak = max(self.peak, self._open_new)
            threading.Thread(target=self._drain, args=(conn, new), daemon=True).start()

    def _drain(self, conn: socket.socket, new: bool) -> None:
        with contextlib.suppress(OSError):
            while conn.recv(65536):
                pass  # read the request, never answer; EOF: the client gave up
        conn.close()
        if new:
            with self._lock:
                self._open_new -= 1

    def close(self) -> None:
        # shutdown() wakes the accept() blocked on the socket; close() alone does not.
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        with self._lock:
            self._closed = True
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.close()


@contextmanager
def hanging_server() -> Iterator[HangingServer]:
    """A :class:`HangingServer` on loopback, closed on exit."""
    server = HangingServer()
    try:
        yield server
    finally:
        server.close()
