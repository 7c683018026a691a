"""Facts read off HA events: times as InfluxDB's nanoseconds."""

from __future__ import annotations

from datetime import UTC, datetime

from core.ha_event import epoch_ns


def test_epoch_ns_is_exact_to_the_microsecond_far_from_the_epoch() -> None:
    assert epoch_ns(datetime(1970, 1, 1, tzinfo=UTC)) == 0
    moment = datetime(2026, 12, 7, 4, 0, 0, 123456, tzinfo=UTC)
    assert epoch_ns(moment) == 1_796_616_000_123_456_000
