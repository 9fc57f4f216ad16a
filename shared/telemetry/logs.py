"""Structured logs: JSON lines with trace ids, INFO sampling, and a Loki handler that never blocks.

``loki-logger-handler`` (1.1) formats in ``emit()`` and pushes from its own thread, but into an
unbounded queue and with no HTTP timeout, so a Loki that hangs would grow memory without end.
:class:`BoundedLokiHandler` gives it a bounded queue (drops counted) and a request timeout.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from loki_logger_handler.loki_logger_handler import (  # type: ignore[import-untyped]
    LogLine,
    LokiLoggerHandler,
)
from loki_logger_handler.stream import Stream  # type: ignore[import-untyped]
from loki_logger_handler.streams import Streams  # type: ignore[import-untyped]
from opentelemetry import trace

from shared.telemetry.drops import DropCounter

#: Loggers whose records never go to OTLP or Loki: the exporters themselves (a feedback loop
#: when the collector is down) and their HTTP stacks.
_SELF_LOGGERS = ("opentelemetry", "urllib3", "requests", "grpc", "loki_logger_handler", "Loki")
# color_message: uvicorn's ANSI-coloured copy of the message, useless in JSON.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}
_TRACE_ID_MASK = (1 << 64) - 1


def trace_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` in hex of the current span, or None outside a recorded trace."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def log_fields(record: logging.LogRecord, static: Mapping[str, str]) -> dict[str, Any]:
    """The JSON object of one record: time, level, logger, message, trace ids, extras."""
    out: dict[str, Any] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        + f".{int(record.msecs):03d}Z",
        "level": record.levelname.lower(),
        "logger": record.name,
        "message": record.getMessage(),
        **static,
    }
    ids = trace_ids()
    if ids is not None:
        out["trace_id"], out["span_id"] = ids
    for key, value in vars(record).items():
        if key not in _STANDARD and not key.startswith("_") and key not in out:
            out[key] = value if isinstance(value, str | int | float | bool | None) else repr(value)
    if record.exc_info and record.exc_info[0] is not None:
        out["exception"] = logging.Formatter().formatException(record.exc_info)
    return out


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with ``trace_id``/``span_id`` of the span that logged it.

    ``static`` fields (component, device) go on every line.
    """

    def __init__(self, static: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self._static = dict(static or {})

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(log_fields(record, self._static), ensure_ascii=False, default=str)


class InfoSampler(logging.Filter):
    """Keeps WARNING and above always, INFO/DEBUG at ``ratio``.

    Lines of one trace are kept or dropped together (decided by the trace id's low 64 bits,
    the bits the trace sampler uses), so a kept line usually has its trace recorded too.
    """

    def __init__(self, ratio: float, *, rng: Callable[[], float] = random.random) -> None:
        super().__init__()
        self.ratio = ratio
        self._bound = round(ratio * (1 << 64))
        self._rng = rng

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING or self.ratio >= 1.0:
            return True
        # Decided once per record, so every sink (OTLP, Loki) keeps or drops the same lines.
        kept: bool | None = getattr(record, "_agl_sampled", None)
        if kept is None:
            ctx = trace.get_current_span().get_span_context()
            if ctx.is_valid:
                kept = (ctx.trace_id & _TRACE_ID_MASK) < self._bound
            else:
                kept = self._rng() < self.ratio
            record._agl_sampled = kept
        return kept


class NotFromExporters(logging.Filter):
    """Drops records of the exporters' own loggers (see ``_SELF_LOGGERS``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(_SELF_LOGGERS)


class _TimeoutSession(requests.Session):
    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self._timeout_s = timeout_s

    def request(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self._timeout_s)
        return super().request(*args, **kwargs)


class _LokiFormatter:
    """``loki-logger-handler``'s formatter interface: ``format(record) -> (dict, metadata)``."""

    def __init__(self, static: Mapping[str, str]) -> None:
        self._static = dict(static)

    def format(self, record: logging.LogRecord) -> tuple[dict[str, Any], dict[str, str]]:
        fields = log_fields(record, self._static)
        fields["timestamp"] = record.created  # the handler turns it into Loki's ns timestamp
        return fields, {}


class BoundedLokiHandler(LokiLoggerHandler):  # type: ignore[misc]
    """Pushes JSON lines to Loki from a background thread; never blocks the caller.

    Labels are ``labels`` plus ``level``; every per-request value (trace id, request id)
    stays in the line. When ``max_queue`` lines are waiting (Loki slow or down) new lines
    are dropped and counted.
    """

    def __init__(
        self,
        url: str,
        *,
        labels: Mapping[str, str],
        flush_interval_s: float,
        timeout_s: float,
        max_queue: int,
        drops: DropCounter,
    ) -> None:
        super().__init__(
            url=url,
            labels=dict(labels),
            timeout=flush_interval_s,
            compressed=True,
            default_formatter=_LokiFormatter({}),
        )
        self.buffer: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self.request.session = _TimeoutSession(timeout_s)
        self._drops = drops

    def _put(self, log_record: dict[str, Any], log_loki_metadata: dict[str, str]) -> None:
        labels = {**self.labels, "level": str(log_record.get("level", "info"))}
        try:
            self.buffer.put_nowait(LogLine(labels, log_record))
        except queue.Full:
            self._drops.add("loki", 1)

    def _send(self) -> None:
        """Push what is buffered in one request; lines of a push that fails are counted."""
        streams: dict[Any, Stream] = {}
        lines = 0
        while True:
            try:
                log = self.buffer.get_nowait()
            except queue.Empty:
                break
            lines += 1
            if log.key not in streams:
                streams[log.key] = Stream(
                    log.labels, self.loki_metadata, self.message_in_json_format
                )
            streams[log.key].append_value(log.line, log.loki_metadata)
        if not streams:
            return
        try:
            self.request.send(Streams(list(streams.values())).serialize())
        except Exception:  # Loki slow, down or refusing: the lines are lost, not the caller
            self._drops.add("loki", lines)

    def close(self) -> None:
        """Push what is buffered (bounded by the request timeout), then close."""
        try:
            if not self.buffer.empty():
                self._send()
        except Exception:  # Loki down at shutdown: the lines are lost, not the process
            self._drops.add("loki", self.buffer.qsize())
        finally:
            super().close()


#: ``uvicorn.Config(log_config=...)``: uvicorn's loggers keep no handlers of their own and
#: propagate to the root logger, so its lines get the same JSON formatter (and shipping) as ours.
UVICORN_LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {
        name: {"handlers": [], "propagate": True}
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
    },
}


@dataclass
class LoggingInstall:
    """What :func:`install_logging` changed on a logger, so it can be undone."""

    logger: logging.Logger
    added: list[logging.Handler] = field(default_factory=list)
    reformatted: list[tuple[logging.Handler, logging.Formatter | None]] = field(
        default_factory=list
    )

    def undo(self) -> None:
        """Remove the added handlers (closing them) and restore formatters."""
        for handler in self.added:
            self.logger.removeHandler(handler)
            handler.close()
        for handler, formatter in self.reformatted:
            handler.setFormatter(formatter)
        self.added.clear()
        self.reformatted.clear()


def install_logging(
    logger: logging.Logger,
    *,
    static: Mapping[str, str],
    json_stderr: bool,
    shipped: list[logging.Handler],
    info_ratio: float,
) -> LoggingInstall:
    """JSON-format the plain stderr handlers of ``logger`` and attach the ``shipped`` handlers.

    Shipped handlers (OTLP, Loki) get the INFO sampler and skip the exporters' own records.
    Only a handler that is exactly ``logging.StreamHandler`` on stderr (what
    ``logging.basicConfig`` installs) is reformatted; test capture handlers are left alone.
    """
    done = LoggingInstall(logger)
    if json_stderr:
        for handler in logger.handlers:
            if type(handler) is logging.StreamHandler and handler.stream in (
                sys.stderr,
                sys.__stderr__,
            ):
                done.reformatted.append((handler, handler.formatter))
                handler.setFormatter(JsonFormatter(static))
    sampler = InfoSampler(info_ratio)
    for handler in shipped:
        handler.addFilter(NotFromExporters())
        handler.addFilter(sampler)
        logger.addHandler(handler)
        done.added.append(handler)
    return done
