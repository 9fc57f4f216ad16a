"""What each NATS user may do: a device's own subjects, the hub's fleet-wide ones (pure).

    perms = device_permissions("dev-1")   # goes into the device's user JWT (``auth.user_claims``)

A device's credentials serve both the agent connecting to the hub's NATS and a leaf node that
links the device's site to it (issue 11): the server checks the same lists on both.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.artifacts import BUCKETS
from shared.batch_wire import AGENT_CONSUMER, HUB_CONSUMER, batch_stream, results_stream
from shared.desired import CONFIG_BUCKET
from shared.subjects import (
    DEVICE_PREFIX,
    INBOX_ROOT,
    check_device_id,
    command_subject,
    device_subject,
    inbox_prefix,
)

#: KV buckets whose own key a device may use: this registry entry, and its desired config in
#: ``CONFIG_BUCKET`` (``shared.desired``).
REGISTRY_BUCKET = "agl_devices"
#: Object stores every device may read (sha256-addressed, signed artifacts).
ARTIFACT_BUCKETS = tuple(BUCKETS.values())


@dataclass(frozen=True)
class Permissions:
    """Subjects a user may publish to and subscribe to; ``responses``: may answer any request."""

    pub: tuple[str, ...]
    sub: tuple[str, ...]
    responses: bool = False


def _hub_api(device: str) -> tuple[str, ...]:
    """The hub JetStream API calls of a device (registry, config, artifacts, batch results)."""
    return (
        f"DIRECT.GET.KV_{CONFIG_BUCKET}.$KV.{CONFIG_BUCKET}.{device}",
        f"CONSUMER.CREATE.KV_{CONFIG_BUCKET}.*.$KV.{CONFIG_BUCKET}.{device}",
        # Signed artifacts (plugins, models) are read by direct get, chunk by chunk.
        *(f"DIRECT.GET.OBJ_{b}" for b in ARTIFACT_BUCKETS),
        *(f"DIRECT.GET.OBJ_{b}.>" for b in ARTIFACT_BUCKETS),
        # Deferred batches: the device reads its own results stream (probe, pull).
        f"STREAM.INFO.{results_stream(device)}",
        f"CONSUMER.MSG.NEXT.{results_stream(device)}.{AGENT_CONSUMER}",
    )


def device_permissions(device: str) -> Permissions:
    """What device ``device`` may do: its own subjects, inbox and registry/config keys only.

    The same credentials serve the agent connecting to the hub's NATS and a leaf node linking
    the device's site to it (leafnode remote). Hub JetStream calls are allowed both as
    ``$JS.API.…`` (direct) and ``$JS.<domain>.API.…`` (from a leaf with its own domain). Across
    a leaf the hub pulls the device's batch stream ``AGL_BATCH_<device>`` (consumer ``hub``)
    in the leaf's domain and acks its lines; the pulled lines come back on the device's own
    subjects (``batch.pull``, see ``shared.batch_wire.pull_inbox``). The leaf itself applies the
    pub list to what it sends up, with no allow_responses tracking (nats-server 2.15: answers to
    the hub's ``_INBOX`` were dropped there), and a right to publish into the hub's inbox would
    let a device answer requests meant for others.
    Every name carries the device id, so device A's leaf never gets B's batch traffic.
    """
    check_device_id(device)
    api = _hub_api(device)
    lines = batch_stream(device)
    return Permissions(
        pub=(
            device_subject(device, ">"),
            f"$KV.{REGISTRY_BUCKET}.{device}",
            *(f"$JS.API.{call}" for call in api),
            *(f"$JS.*.API.{call}" for call in api),
            f"$JS.ACK.{results_stream(device)}.{AGENT_CONSUMER}.>",
        ),
        sub=(
            f"{inbox_prefix(device)}.>",
            command_subject(device),
            f"$JS.*.API.CONSUMER.MSG.NEXT.{lines}.{HUB_CONSUMER}",
            f"$JS.ACK.{lines}.{HUB_CONSUMER}.>",
        ),
    )


def hub_permissions() -> Permissions:
    """The hub: every device subject, every inbox (replies, interest probes), JetStream, $SRV."""
    return Permissions(
        pub=(f"{DEVICE_PREFIX}>", f"{INBOX_ROOT}.>", "$SRV.>", "$JS.>", "$KV.>", "$JSC.>", "$O.>"),
        sub=(f"{DEVICE_PREFIX}>", f"{INBOX_ROOT}.>", "$SRV.>"),
    )
