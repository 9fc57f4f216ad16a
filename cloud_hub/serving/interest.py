"""Stop work nobody waits for: probe a request's reply subject while it is being served.

A request whose reply subject has no subscriber (a dead edge, or a forged reply subject) would
otherwise keep a slot generating until the hub's deadline. While a request runs, the hub sends an
empty NATS request with the ``Agl-Probe`` header to the subject from
:func:`shared.protocol.probe_subject`: "no responders" means nobody listens any more, so the
request is cancelled; anything else (a timeout, since edges do not answer probes) means someone
still does.

    watcher = start_watch(nc, reply, req, ctx.cancelled, every_s=2.0)  # None: nothing to probe
    ...
    watcher.cancel()  # once the request is answered
"""

from __future__ import annotations

import asyncio
import logging
import threading

import nats.errors
from nats.aio.client import Client

from shared.protocol import PROBE_HEADER, InferRequest, probe_subject

log = logging.getLogger(__name__)

__all__ = ["start_watch", "watch_interest"]


def start_watch(
    nc: Client, reply: str, req: InferRequest, cancelled: threading.Event, *, every_s: float
) -> asyncio.Task[None] | None:
    """Probe ``req``'s reply subject every ``every_s`` s in a task (None when off or unprobeable)."""
    subject = probe_subject(reply, stream=req.stream)
    if not every_s or subject is None:
        return None
    return asyncio.create_task(
        watch_interest(
            nc,
            subject,
            cancelled,
            request_id=req.id,
            every_s=every_s,
            first_after_s=min(every_s, 0.5),
        )
    )


async def watch_interest(
    nc: Client,
    subject: str,
    cancelled: threading.Event,
    *,
    request_id: str,
    every_s: float,
    first_after_s: float,
    wait_s: float = 0.5,
) -> None:
    """Set ``cancelled`` as soon as a probe of ``subject`` finds no listener."""
    delay = first_after_s
    while True:
        await asyncio.sleep(delay)
        if cancelled.is_set():
            return
        try:
            await nc.request(subject, b"", timeout=wait_s, headers={PROBE_HEADER: "1"})
        except nats.errors.NoRespondersError:
            log.warning(
                "request %s: nobody listens on its reply subject any more; stopping it", request_id
            )
            cancelled.set()
            return
        except (nats.errors.TimeoutError, TimeoutError):
            pass  # delivered: someone listens (edges do not answer probes)
        except nats.errors.Error as exc:
            log.debug("interest probe for %s failed: %s", request_id, exc)
        delay = every_s
