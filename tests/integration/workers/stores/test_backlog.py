"""A destination's backlog (workers/stores/backlog.py) against a real Redis, when a drainer's
lock lapsed (a write slower than its TTL) and another drainer finished its chunk meanwhile."""

from __future__ import annotations

import pytest
import redis

from config.redis_keys import RedisKeys
from workers.stores.backlog import Backlog

pytestmark = pytest.mark.integration

KEYS = RedisKeys().for_destination("archive")


def messages(first: int, count: int) -> list[dict[str, object]]:
    return [{"seq": seq} for seq in range(first, first + count)]


def test_a_chunk_another_drainer_finished_is_neither_replaced_nor_finished_again(
    redis_url: str,
) -> None:
    client = redis.Redis.from_url(redis_url)
    backlog = Backlog(client, KEYS)
    backlog.add(messages(0, 3))
    backlog.add(messages(3, 2))
    mine = backlog.oldest()
    assert mine is not None
    backlog.finish(mine)  # the other drainer, which took the lapsed lock, wrote it
    # The first drainer's write of the same chunk ends: failed (keep the rest), or done.
    backlog.replace(mine, mine.messages[1:])
    backlog.finish(mine)
    left = backlog.oldest()
    assert left is not None
    assert left.messages == messages(3, 2), "the next chunk is untouched"
    assert backlog.events() == 2
    assert backlog.chunks() == 1
