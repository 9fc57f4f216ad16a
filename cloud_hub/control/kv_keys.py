"""Every key of a JetStream KV bucket, counted by the server itself (NATS I/O).

    keys = await bucket_keys(nc, "agl_devices")   # sorted; [] for an empty bucket

nats-py's ``KeyValue.keys()`` reads the keys through a consumer and stops when the consumer's
``num_pending`` is 0 and nothing has reached the client yet. Under load the server can already
count the last key as delivered while it is still on its way, so ``keys()`` then answers too few
keys, or none at all (``hubctl devices list`` showed an enrolled device missing). Here the keys
come from STREAM.INFO with a subjects filter: the stream's own per-subject counts, page by page,
with nothing in flight. A key whose latest entry is a delete marker is still listed; reading it
with ``kv.get`` tells it apart. The server pages at 100 000 subjects; every key is held in memory
(one short string per device or rollout), which is what the callers read next anyway.
"""

from __future__ import annotations

import json
from typing import Any

from nats.aio.client import Client

from cloud_hub.errors import HubError

#: The JetStream API prefix of the hub's own domain (what ``nc.jetstream()`` uses).
API_PREFIX = "$JS.API"


class BucketReadError(HubError):
    """The bucket's keys could not be read (no such bucket, no JetStream, timeout)."""


def page_keys(body: dict[str, Any], bucket: str) -> tuple[list[str], int]:
    """The keys of one STREAM.INFO answer and how many subjects match in all (pure)."""
    error = body.get("error")
    if error:
        raise BucketReadError(
            f"cannot list the keys of KV {bucket}: {error.get('description', error)}; "
            "the bucket is made by `hubctl serve` (or `hubctl devices enroll`) on a server with "
            "JetStream on"
        )
    prefix = f"$KV.{bucket}."
    subjects = (body.get("state") or {}).get("subjects") or {}
    keys = [s[len(prefix) :] for s in subjects if s.startswith(prefix)]
    return keys, int(body.get("total") or 0)


async def bucket_keys(nc: Client, bucket: str, *, timeout: float = 5.0) -> list[str]:
    """Every key stored in KV ``bucket``, sorted (the server pages the subject list)."""
    found: set[str] = set()
    offset = 0
    while True:
        request = {"subjects_filter": f"$KV.{bucket}.>", "offset": offset}
        try:
            msg = await nc.request(
                f"{API_PREFIX}.STREAM.INFO.KV_{bucket}",
                json.dumps(request).encode(),
                timeout=timeout,
            )
            body = json.loads(msg.data)
        except Exception as exc:  # no responders (no JetStream), timeout, garbage
            raise BucketReadError(
                f"cannot list the keys of KV {bucket}: {exc or type(exc).__name__}; check that the "
                "NATS server runs with JetStream on (-js) and that --nats-url points at it"
            ) from None
        keys, total = page_keys(body, bucket)
        found.update(keys)
        offset += len(keys)
        if not keys or offset >= total:
            return sorted(found)
