"""What a bulk taker is: the one interface of the workers' own consumers of the ingest queue.

Two implement it, one per broker kind (workers/consumers/bulk_consumer.py chooses by
`Settings.broker_kind`): the Redis taker (workers/consumers/redis_taker.py: a Lua take of up to
BATCH_SIZE messages, one finish per batch, a liveness key) and the RabbitMQ taker
(workers/consumers/amqp_taker.py: a prefetch window, one multiple ack per batch). Each runs its
threads beside Celery's consumer, writes through the worker context it is given, and waits
between attempts with core/backoff.py, never a doubling of its own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Protocol

from core.backoff import BackoffFactory, exponential_backoff

log = logging.getLogger(__name__)

RETRY_INITIAL_S = 0.2
RETRY_CAP_S = 5.0


def retry_delays() -> Iterator[float]:
    """The takers' waits after an error (their default BackoffFactory): 0.2 s growing to 5 s,
    jittered."""
    return exponential_backoff(initial=RETRY_INITIAL_S, cap=RETRY_CAP_S)


class Taker(Protocol):
    """A worker's own consumer of the ingest queue, owned by the consumer step."""

    stop_event: threading.Event
    """Set when the worker shuts down: the batch being written finishes or is handed back."""
    batches: int
    """Batches written (or handed back) so far."""

    def start(self) -> None:
        """Start taking, in threads of its own; returns at once."""

    def running(self) -> bool:
        """Whether its threads still run (Celery restarting its consumer leaves them so)."""

    def stop(self, timeout: float = 60.0) -> None:
        """Finish or hand back the batch in hand, give back what is taken, end the threads."""


def keep_going(
    step: Callable[[], None],
    *,
    stop: threading.Event,
    backoff: BackoffFactory,
    broker_errors: tuple[type[Exception], ...],
    broker: str,
) -> None:
    """Run `step` until `stop` is set. After a failure wait the next backoff delay (a success
    starts the delays again): a broker error is said in one line, anything else with its
    traceback, since it is a defect; neither ends the taker."""
    delays = None
    while not stop.is_set():
        try:
            step()
            delays = None
        except Exception as exc:
            delays = delays or backoff()
            delay = next(delays)
            if isinstance(exc, broker_errors):
                log.warning(
                    "bulk consumer: %s unavailable (%s: %s), retrying in %.1f s",
                    broker,
                    type(exc).__name__,
                    exc,
                    delay,
                )
            else:
                log.exception("bulk consumer: unexpected error; retrying in %.1f s", delay)
            stop.wait(delay)
