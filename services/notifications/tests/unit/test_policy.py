"""Quiet hours (Asia/Ho_Chi_Minh), per-recipient rate limit and retry backoff."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from notifications.policy import QuietHours, RateLimit, RetryPolicy

QUIET = QuietHours.parse("21:00", "07:00")


def vn(hour: int, minute: int = 0, day: int = 23) -> datetime:
    """A Vietnam local time (UTC+7) as a UTC instant."""
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC) - timedelta(hours=7)


def test_daytime_is_not_quiet() -> None:
    assert QUIET.release_at(vn(7)) is None
    assert QUIET.release_at(vn(12)) is None
    assert QUIET.release_at(vn(20, 59)) is None


def test_evening_messages_wait_until_seven_next_morning() -> None:
    assert QUIET.release_at(vn(21)) == vn(7, day=24)
    assert QUIET.release_at(vn(23, 30)) == vn(7, day=24)


def test_early_morning_messages_wait_until_seven_the_same_day() -> None:
    assert QUIET.release_at(vn(0, 5, day=24)) == vn(7, day=24)
    assert QUIET.release_at(vn(6, 59, day=24)) == vn(7, day=24)


def test_equal_start_and_end_turn_quiet_hours_off() -> None:
    assert QuietHours.parse("00:00", "00:00").release_at(vn(23)) is None


def test_a_daytime_window_works_too() -> None:
    lunch = QuietHours.parse("12:00", "13:30")
    assert lunch.release_at(vn(12, 15)) == vn(13, 30)
    assert lunch.release_at(vn(14)) is None


def test_rate_limit_holds_until_the_oldest_send_leaves_the_window() -> None:
    limit = RateLimit(max_messages=2, window=timedelta(hours=1))
    now = vn(12)
    assert limit.release_at(now, []) is None
    assert limit.release_at(now, [now - timedelta(minutes=10)]) is None
    sent = [now - timedelta(minutes=50), now - timedelta(minutes=10)]
    assert limit.release_at(now, sent) == now + timedelta(minutes=10)
    # Sends older than the window do not count.
    assert limit.release_at(now, [now - timedelta(hours=2), now - timedelta(minutes=5)]) is None


def test_rate_limit_zero_means_unlimited() -> None:
    assert RateLimit(0, timedelta(hours=1)).release_at(vn(12), [vn(12)] * 50) is None


def test_backoff_doubles_up_to_the_maximum_then_gives_up() -> None:
    policy = RetryPolicy(max_attempts=5, initial=timedelta(seconds=2), maximum=timedelta(seconds=5))
    now = vn(12)
    assert policy.next_attempt_at(now, 1) == now + timedelta(seconds=2)
    assert policy.next_attempt_at(now, 2) == now + timedelta(seconds=4)
    assert policy.next_attempt_at(now, 3) == now + timedelta(seconds=5)
    assert policy.next_attempt_at(now, 4) == now + timedelta(seconds=5)
    assert policy.next_attempt_at(now, 5) is None
