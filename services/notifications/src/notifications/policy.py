"""When a delivery may go out: quiet hours, per-recipient rate limit, retry backoff. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def parse_clock(value: str) -> time:
    hours, _, minutes = value.strip().partition(":")
    return time(int(hours), int(minutes or 0))


@dataclass(frozen=True)
class QuietHours:
    """A nightly window (local time) in which non-urgent messages wait; start == end: none."""

    start: time
    end: time
    tz: ZoneInfo = LOCAL_TZ

    @classmethod
    def parse(cls, start: str, end: str, tz: str = "Asia/Ho_Chi_Minh") -> QuietHours:
        return cls(parse_clock(start), parse_clock(end), ZoneInfo(tz))

    def contains(self, now: datetime) -> bool:
        t = now.astimezone(self.tz).time()
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end  # the window crosses midnight

    def release_at(self, now: datetime) -> datetime | None:
        """When a held message may go, or None if it may go now."""
        if not self.contains(now):
            return None
        local = now.astimezone(self.tz)
        release = local.replace(hour=self.end.hour, minute=self.end.minute, second=0, microsecond=0)
        if release <= local:
            release += timedelta(days=1)
        return release.astimezone(UTC)


@dataclass(frozen=True)
class RateLimit:
    """At most `max_messages` non-urgent messages per recipient in any `window`."""

    max_messages: int
    window: timedelta

    def release_at(self, now: datetime, recent_sent_at: list[datetime]) -> datetime | None:
        """recent_sent_at: this recipient's non-urgent sends (and sends in flight) in the window."""
        if self.max_messages <= 0:
            return None
        in_window = sorted(t for t in recent_sent_at if t > now - self.window)
        if len(in_window) < self.max_messages:
            return None
        # The earliest send that must leave the window before one more fits.
        return in_window[len(in_window) - self.max_messages] + self.window


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    initial: timedelta
    maximum: timedelta

    def next_attempt_at(self, now: datetime, attempts_made: int) -> datetime | None:
        """None once the attempts are used up: the delivery has failed."""
        if attempts_made >= self.max_attempts:
            return None
        delay: timedelta = self.initial * (2 ** max(0, attempts_made - 1))
        return now + min(delay, self.maximum)
