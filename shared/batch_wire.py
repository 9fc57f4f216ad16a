"""Deferred batch lines between an edge site and the hub: names, subjects and messages.

Pure: no sockets. Every name is device-scoped, so that server permissions can give a device
its own streams only::

    stream AGL_BATCH_<device>      (site's leaf domain, file storage, work queue, discard new)
        agl.v1.dev.<device>.batch.line.<batch id>    lines for the hub     (consumer "hub")
        agl.v1.dev.<device>.batch.local.<batch id>   lines for this device (consumer "local")
    stream AGL_BATCHRES_<device>   (hub domain)
        agl.v1.dev.<device>.batch.result.<batch id>  results               (consumer "agent")
    agl.v1.dev.<device>.batch.hello                  "my lines wait in JetStream domain X"
    agl.v1.dev.<device>.batch.pull.<nuid>            the hub's pulls of lines are answered here

Each line message carries ``Nats-Msg-Id: <batch id>.<index>`` (the stream drops a repeat) and
each result the same id, so a line is answered once whatever is retried.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import AglError
from shared.protocol import InferRequest, ResultMessage

DEVICE_PREFIX = "agl.v1.dev."
HELLO_WILDCARD = DEVICE_PREFIX + "*.batch.hello"
#: Durable consumer names: the hub's workers on the device's line stream, the device's own
#: idle-capacity worker, and the device reading its results on the hub.
HUB_CONSUMER = "hub"
LOCAL_CONSUMER = "local"
AGENT_CONSUMER = "agent"
MSG_ID_HEADER = "Nats-Msg-Id"


class BatchWireError(AglError):
    """A batch message that does not follow the protocol."""


def batch_stream(device: str) -> str:
    """The device's line stream on its site's leaf domain."""
    return f"AGL_BATCH_{device}"


def results_stream(device: str) -> str:
    """The device's results stream on the hub domain."""
    return f"AGL_BATCHRES_{device}"


def line_subject(device: str, batch_id: str, *, local: bool = False) -> str:
    """Where a line waits: ``…batch.line.<batch>`` (hub) or ``…batch.local.<batch>`` (device)."""
    return f"{DEVICE_PREFIX}{device}.batch.{'local' if local else 'line'}.{batch_id}"


def lines_filter(device: str, *, local: bool = False) -> str:
    """The subject filter of one kind of line of a device."""
    return f"{DEVICE_PREFIX}{device}.batch.{'local' if local else 'line'}.>"


def result_subject(device: str, batch_id: str) -> str:
    """Where the hub puts a result for ``device``."""
    return f"{DEVICE_PREFIX}{device}.batch.result.{batch_id}"


def pull_inbox(device: str) -> str:
    """Where the hub's pulls of a device's lines are answered (its own subjects, so that the
    device's credentials allow its leaf to answer them); a prefix, ends with a dot."""
    return f"{DEVICE_PREFIX}{device}.batch.pull."


def hello_subject(device: str) -> str:
    """Where a device says which JetStream domain its lines wait in."""
    return f"{DEVICE_PREFIX}{device}.batch.hello"


def device_of(subject: str) -> str:
    """The device id of a ``agl.v1.dev.<device>.…`` subject (the server enforces it)."""
    parts = subject.split(".")
    if len(parts) < 4 or not subject.startswith(DEVICE_PREFIX) or not parts[3]:
        raise BatchWireError(f"{subject!r} is not a device subject (agl.v1.dev.<device>.…)")
    return parts[3]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")  # mixed versions during a rollout
    v: Literal[1] = 1


class BatchLine(_Wire):
    """One line of a batch, as stored in the device's stream."""

    batch_id: str = Field(min_length=1, max_length=64)
    index: int = Field(ge=0)
    custom_id: str
    request: InferRequest
    tier: Literal["cloud", "edge", "auto"] = "cloud"
    reason: str = "default"
    body: dict[str, Any] | None = None
    """The OpenAI request body (kept for lines the device answers itself)."""

    @property
    def line_id(self) -> str:
        """``<batch id>.<index>``: the line's ``Nats-Msg-Id`` and result id."""
        return f"{self.batch_id}.{self.index}"


class LineFailure(BaseModel):
    """Why the hub could not answer a line."""

    model_config = ConfigDict(extra="ignore")
    code: str
    message: str


class BatchResult(_Wire):
    """The hub's answer to one line."""

    batch_id: str
    index: int = Field(ge=0)
    custom_id: str
    reason: str = "default"
    """The line's route reason, echoed (``default``, ``policy`` or ``load``)."""
    result: ResultMessage | None = None
    error: LineFailure | None = None

    @property
    def line_id(self) -> str:
        """Same as the line's."""
        return f"{self.batch_id}.{self.index}"


class BatchHello(_Wire):
    """A device's lines wait in JetStream domain ``domain`` (its site's leaf)."""

    domain: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")


def encode_wire(msg: _Wire) -> bytes:
    """Compact JSON bytes."""
    return msg.model_dump_json(exclude_none=True).encode()


def decode_wire(data: bytes, kind: type[_Wire]) -> Any:
    """Parse ``data`` as ``kind``; a bad message is a :class:`BatchWireError` naming the field."""
    try:
        return kind.model_validate(json.loads(data))
    except (ValueError, ValidationError) as exc:
        raise BatchWireError(f"bad {kind.__name__} message: {exc}") from None
