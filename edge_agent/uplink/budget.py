"""A per-day budget of cloud tokens (pure; the date is injectable).

budget = TokenBudget(daily_tokens=100_000)
if budget.has_room():
    ...; budget.charge(usage.total_tokens)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable


def _utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


class TokenBudget:
    """Counts tokens spent on the cloud per (UTC) day; ``daily_tokens=None`` means unlimited."""

    def __init__(
        self, daily_tokens: int | None = None, *, today: Callable[[], dt.date] = _utc_today
    ) -> None:
        if daily_tokens is not None and daily_tokens < 0:
            raise ValueError("daily_tokens must be None (unlimited) or >= 0")
        self.daily_tokens = daily_tokens
        self._today = today
        self._day = today()
        self._spent = 0

    def _roll(self) -> None:
        day = self._today()
        if day != self._day:
            self._day = day
            self._spent = 0

    @property
    def spent(self) -> int:
        """Tokens charged today."""
        self._roll()
        return self._spent

    def remaining(self) -> int | None:
        """Tokens left today, or ``None`` when unlimited."""
        if self.daily_tokens is None:
            return None
        return max(0, self.daily_tokens - self.spent)

    def has_room(self) -> bool:
        """Whether another cloud request may start today."""
        left = self.remaining()
        return left is None or left > 0

    def charge(self, tokens: int) -> None:
        """Add ``tokens`` (prompt plus completion) to today's spend."""
        self._roll()
        self._spent += max(0, tokens)
