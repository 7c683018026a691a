"""How full the places that hold waiting events are: the broker's memory and the spool's disk.

Read on the publisher thread at most once a second, cheap both (one INFO, one statvfs), so the
listener sees a limit coming before it bites:

- a Redis broker at `maxmemory` with `noeviction` refuses every write, the listener's LPUSH
  included. From BROKER_MEMORY_SPOOL_PERCENT of it the listener treats the broker as full and
  keeps new events in its disk spool, so the last of the broker's memory stays for the workers'
  bookkeeping and an outage's events are not all in RAM;
- the spool stops at SPOOL_MAX_MB or when its disk is full; the figures go to the health report
  (reason `spool_disk`) while there is still room.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from config.broker_kind import BrokerKind

log = logging.getLogger(__name__)

READ_EVERY_S = 1.0


@dataclass(frozen=True)
class BrokerMemory:
    """Redis's own figures: used_memory and maxmemory (0: no limit set)."""

    used: int
    limit: int

    @property
    def percent(self) -> float | None:
        return None if not self.limit else 100.0 * self.used / self.limit


class BrokerMemoryGate:
    """Says whether the broker is too full to publish to; None figures on other brokers."""

    def __init__(
        self,
        broker_url: str,
        kind: BrokerKind,
        spool_percent: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client: redis.Redis | None = None
        if kind is BrokerKind.REDIS:
            self._client = redis.Redis.from_url(
                broker_url,
                socket_timeout=1.0,
                socket_connect_timeout=1.0,
                retry=Retry(NoBackoff(), 0),
            )
        self._spool_percent = spool_percent
        self._clock = clock
        self._read_at = -float("inf")
        self.memory: BrokerMemory | None = None
        self.full = False

    def check(self) -> bool:
        """Whether the broker is above its threshold (read again at most once a second)."""
        now = self._clock()
        if self._client is None or now - self._read_at < READ_EVERY_S:
            return self.full
        self._read_at = now
        try:
            info = self._client.info("memory")
        except redis.RedisError:
            return self.full  # unreachable is the publish's business (the spool), not ours
        self.memory = BrokerMemory(int(info.get("used_memory", 0)), int(info.get("maxmemory", 0)))
        percent = self.memory.percent
        full = percent is not None and percent >= self._spool_percent
        if full != self.full:
            if full:
                log.warning(
                    "the broker's memory is at %.0f%% of its maxmemory (BROKER_MEMORY_SPOOL_PERCENT"
                    "=%g): new events go to the local spool until it falls below — the workers "
                    "cannot keep up or InfluxDB is unavailable; raise Redis's maxmemory if the "
                    "host has the RAM",
                    percent,
                    self._spool_percent,
                )
            else:
                log.info("the broker's memory is below its threshold again: publishing resumes")
        self.full = full
        return full

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


@dataclass(frozen=True)
class SpoolDisk:
    used: int
    limit: int
    disk_free: int


def spool_disk(path: Path, used: int, limit: int) -> SpoolDisk:
    """The spool's size against its cap and the free space of its file system."""
    try:
        st = os.statvfs(path.parent)
        free = st.f_bavail * st.f_frsize
    except OSError:
        free = 0
    return SpoolDisk(used, limit, free)
