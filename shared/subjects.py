"""The NATS subjects of protocol v1: device-scoped, so that server permissions enforce identity.

Pure: no sockets. Every device talks only on its own subjects, and the hub reads the device id
from the subject (which the server's permissions enforce), never from a message body::

    agl.v1.dev.<device>.infer.<model>        request → reply / chunk stream     (edge → hub)
    agl.v1.dev.<device>.cancel.<request id>  stop generating                    (edge → hub)
    agl.v1.dev.<device>.hb                   heartbeat                          (edge → hub)
    agl.v1.dev.<device>.cmd                  control commands                   (hub → edge)
    _INBOX.<device>.>                        the device's replies (``inbox_prefix``)

    infer_subject("dev-1", "glm-4-plus")     # 'agl.v1.dev.dev-1.infer.glm-4-plus'
    parse_subject("agl.v1.dev.dev-1.hb")     # DeviceSubject(device='dev-1', verb='hb', arg='')
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.errors import AglError

SUBJECT_PREFIX = "agl.v1"
DEVICE_PREFIX = f"{SUBJECT_PREFIX}.dev."
INBOX_ROOT = "_INBOX"
#: Every hub worker subscribes to device subjects in this queue group.
QUEUE_GROUP = "hub"
#: Longest device id (a NATS subject token, a KV key and a file name).
MAX_DEVICE_ID = 64

_TOKEN = re.compile(r"^[A-Za-z0-9_\-:@+=]+$")
_DEVICE = re.compile(rf"^[A-Za-z0-9_-]{{1,{MAX_DEVICE_ID}}}$")


class ProtocolError(AglError):
    """A message or subject that does not follow protocol v1."""


class InvalidSubjectToken(ProtocolError):
    """A device id, model name or request id that cannot be one NATS subject token."""


def _check_token(value: str, what: str) -> str:
    if not _TOKEN.fullmatch(value):
        raise InvalidSubjectToken(
            f"{what} {value!r} cannot be a NATS subject token; use letters, digits and - _ : @ + = "
            "only (no spaces, dots, '*' or '>')"
        )
    return value


def check_device_id(device: str) -> str:
    """Return ``device`` if it is a valid device id, else raise :class:`InvalidSubjectToken`.

    A device id is 1–64 letters, digits, ``-`` or ``_``: it is a subject token, a KV key and
    the name of its ``.creds`` file.
    """
    if not _DEVICE.fullmatch(device):
        raise InvalidSubjectToken(
            f"device id {device!r} is not valid; use 1-{MAX_DEVICE_ID} letters, digits, '-' or '_'"
        )
    return device


def device_subject(device: str, *tokens: str) -> str:
    """``agl.v1.dev.<device>`` followed by ``tokens``."""
    return ".".join((DEVICE_PREFIX + check_device_id(device), *tokens))


def infer_subject(device: str, model: str) -> str:
    """Where ``device`` sends a request for ``model``: ``agl.v1.dev.<device>.infer.<model>``."""
    return device_subject(device, "infer", _check_token(model, "model name"))


def cancel_subject(device: str, request_id: str) -> str:
    """Where ``device`` cancels its request: ``agl.v1.dev.<device>.cancel.<request id>``."""
    return device_subject(device, "cancel", _check_token(request_id, "request id"))


def heartbeat_subject(device: str) -> str:
    """Where ``device`` publishes heartbeats: ``agl.v1.dev.<device>.hb``."""
    return device_subject(device, "hb")


def command_subject(device: str) -> str:
    """Where the hub sends ``device`` control commands: ``agl.v1.dev.<device>.cmd``."""
    return device_subject(device, "cmd")


def inbox_prefix(device: str) -> str:
    """The device's inbox prefix (nats-py ``inbox_prefix``): ``_INBOX.<device>``."""
    return f"{INBOX_ROOT}.{check_device_id(device)}"


def hub_infer_wildcard(model: str | None = None) -> str:
    """The hub's subscription for ``model`` from every device (any model when ``None``)."""
    return f"{DEVICE_PREFIX}*.infer." + (_check_token(model, "model name") if model else "*")


#: The hub hears every device's cancels and heartbeats on these.
CANCEL_WILDCARD = f"{DEVICE_PREFIX}*.cancel.*"
HEARTBEAT_WILDCARD = f"{DEVICE_PREFIX}*.hb"


@dataclass(frozen=True, slots=True)
class DeviceSubject:
    """A parsed device subject: ``agl.v1.dev.<device>.<verb>[.<arg>]``."""

    device: str
    verb: str
    arg: str


def parse_subject(subject: str) -> DeviceSubject | None:
    """Split a device subject into device, verb and argument; ``None`` if it is not one."""
    if not subject.startswith(DEVICE_PREFIX):
        return None
    parts = subject[len(DEVICE_PREFIX) :].split(".")
    if len(parts) not in (2, 3) or not _DEVICE.fullmatch(parts[0]) or not parts[1]:
        return None
    return DeviceSubject(parts[0], parts[1], parts[2] if len(parts) == 3 else "")


def model_from_subject(subject: str) -> str | None:
    """The model token of an inference subject, or ``None`` if it is not one."""
    parsed = parse_subject(subject)
    return (parsed.arg or None) if parsed is not None and parsed.verb == "infer" else None


def reply_belongs_to(device: str, reply: str) -> bool:
    """Whether ``reply`` lies in ``device``'s own inbox (``_INBOX.<device>.…``).

    The server does not check reply subjects against permissions: without this check a device
    could make the hub answer into another device's inbox.
    """
    return reply.startswith(f"{INBOX_ROOT}.{device}.")


def probe_subject(reply: str, *, stream: bool) -> str | None:
    """Where a hub checks that someone still listens for the answer to a request, or None.

    A stream's reply subject is the edge's own subscription, which skips probe messages. A
    non-streamed request's reply goes through the client's shared request inbox
    (``<prefix>.<token>``), so the probe goes to a sibling token that no request owns; it
    tells whether the edge's connection is still there.
    """
    if stream:
        return reply
    parent, dot, _token = reply.rpartition(".")
    return f"{parent}.aglprobe" if dot and parent.count(".") >= 1 else None
