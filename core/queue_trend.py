"""Is the queue moving? Beat's progress between runs, and the queue's depth trend from it.

Beat runs every few seconds and keeps what it saw last (`QueueProgress`, JSON under the
beat:state key): the time of the last progress — a write, a shrinking or an empty queue — and
the depth samples of the last minutes. From those come "stalled for 6 min" and "growing by
2,000/min". Pure: readings and the previous record in, the next one out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

TREND_WINDOW_S = 60.0
"""Queue growth is measured over the last minute of samples."""
SAMPLES_KEPT_S = 180.0


@dataclass(frozen=True)
class QueueReading:
    """The broker's view of the ingest queue; None where the broker cannot tell."""

    depth: int | None = None
    in_flight: int | None = None
    oldest_received_at: float | None = None
    error: str | None = None
    in_flight_by_consumer: Mapping[str, int] | None = None
    """Consumer id → messages its bulk consumer has in flight (Redis,
    workers/consumers/bulk_queue.py)."""
    given_back: int | None = None
    """Messages sweeps gave back from consumers that stopped renewing their liveness (total)."""
    workers_alive: int | None = None
    """Workers taking the queue: bulk consumers with a live liveness key (Redis), consumers of
    the queue (RabbitMQ); None where the broker cannot tell (Celery's own consumer on Redis)."""


@dataclass(frozen=True)
class QueueProgress:
    """What beat remembers between runs, to see trends (JSON under the beat:state key)."""

    progress_at: float
    written: int
    pending: int
    samples: tuple[tuple[float, int], ...] = ()

    def to_document(self) -> dict[str, Any]:
        return {
            "progress_at": self.progress_at,
            "written": self.written,
            "pending": self.pending,
            "samples": [list(s) for s in self.samples],
        }

    @classmethod
    def from_document(cls, data: Any) -> QueueProgress | None:
        try:
            return cls(
                progress_at=float(data["progress_at"]),
                written=int(data["written"]),
                pending=int(data["pending"]),
                samples=tuple((float(t), int(d)) for t, d in data["samples"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


def advance_progress(
    previous: QueueProgress | None, now: float, queue: QueueReading, written: int
) -> QueueProgress:
    """Beat's record after this run: progress is a write, a shrinking or an empty queue."""
    if queue.depth is None:
        if previous is None:
            return QueueProgress(progress_at=now, written=written, pending=0)
        return QueueProgress(previous.progress_at, written, previous.pending, previous.samples)
    pending = queue.depth + (queue.in_flight or 0)
    progressed = (
        previous is None
        or written != previous.written
        or pending == 0
        or pending < previous.pending
    )
    samples = (
        [] if previous is None else [s for s in previous.samples if now - s[0] <= SAMPLES_KEPT_S]
    )
    samples.append((now, queue.depth))
    return QueueProgress(
        progress_at=now if progressed or previous is None else previous.progress_at,
        written=written,
        pending=pending,
        samples=tuple(samples),
    )


def depth_trend(samples: tuple[tuple[float, int], ...], now: float) -> float | None:
    """Change of the queue depth per minute over the last minute of samples."""
    recent = [s for s in samples if now - s[0] <= TREND_WINDOW_S]
    if len(recent) < 2 or recent[-1][0] - recent[0][0] < 1.0:
        return None
    (t0, d0), (t1, d1) = recent[0], recent[-1]
    return (d1 - d0) / (t1 - t0) * 60.0
