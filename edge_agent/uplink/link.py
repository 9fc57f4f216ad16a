"""What the hub link is doing, and the log lines an operator needs about it (pure; clock injectable).

    link = LinkState("nats://hub:4222", reminder_s=60)
    link.failed("connection refused")   # WARNING once: the link is down
    link.failed("connection refused")   # silent, or one reminder per `reminder_s`
    link.up()                           # INFO: the link is back, and after how long

A broken link never stops the agent (local answers still work), so it must not be silent either:
one line when it goes down, one when it comes back, and a reminder while it stays down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("edge_agent.uplink")

#: Seconds between two "hub link still down" reminders.
REMINDER_S = 60.0


class LinkState:
    """The hub link's state: up or down, since when, the last error; logs each change."""

    def __init__(
        self,
        servers: str,
        *,
        reminder_s: float = REMINDER_S,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.servers = servers
        self.reminder_s = reminder_s
        self._clock = clock
        self._wall = wall
        self.is_up = False
        self.ever_up = False
        self.last_error: str | None = None
        self.failures = 0
        self._down_at: float | None = None
        self._down_wall: float | None = None
        self._reminded_at: float | None = None

    def failed(self, error: str) -> None:
        """A connection attempt failed, or the live connection broke."""
        self.last_error = error
        self.failures += 1
        now = self._clock()
        if self._down_at is None or self.is_up:
            self._went_down(now, error)
            return
        if self._reminded_at is not None and now - self._reminded_at >= self.reminder_s:
            self._reminded_at = now
            log.warning(
                "hub link still down after %.0f s (%d failed attempts, last: %s); "
                "answering every request locally",
                now - self._down_at,
                self.failures,
                error,
                extra={"hub_link": "down", "nats_servers": self.servers},
            )

    def lost(self) -> None:
        """The live connection dropped (the client reconnects on its own)."""
        if self.is_up:
            self._went_down(self._clock(), self.last_error or "connection lost")

    def _went_down(self, now: float, error: str) -> None:
        self.is_up = False
        self._down_at = self._reminded_at = now
        self._down_wall = self._wall()
        self.failures = max(self.failures, 1)
        log.warning(
            "hub link down: %s NATS at %s (%s); answering locally (reason fallback) until it is back",
            "lost" if self.ever_up else "cannot reach",
            self.servers,
            error,
            extra={"hub_link": "down", "nats_servers": self.servers},
        )

    def up(self, url: str) -> None:
        """Connected (first time or again)."""
        now = self._clock()
        if self._down_at is not None:
            log.info(
                "hub link up again: connected to NATS at %s after %.0f s down",
                url,
                now - self._down_at,
                extra={"hub_link": "up", "nats_servers": self.servers},
            )
        else:
            log.info(
                "hub link up: connected to NATS at %s",
                url,
                extra={"hub_link": "up", "nats_servers": self.servers},
            )
        self.is_up = self.ever_up = True
        self.failures = 0
        self._down_at = self._down_wall = self._reminded_at = None

    def snapshot(self) -> dict[str, Any]:
        """The link as ``/status`` shows it."""
        return {
            "connected": self.is_up,
            "down_since": self._down_wall,
            "failed_attempts": self.failures,
            "last_error": self.last_error,
        }
