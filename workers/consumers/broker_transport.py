"""kombu's Redis transport, changed so a message a worker takes is never only in that worker.

Why. kombu takes a message with BRPOP, which removes it from the queue, and only then records
it as unacknowledged (its `unacked` hash, which the visibility timeout sweeps). In between, the
message exists only in the worker: in its socket buffer, or unread while a solo-pool worker is
busy writing a batch or its prefetch window is full. A worker killed then loses it for good
(celery/kombu#305; the worker-kill fault test saw one point lost in about one run of three).

How (the "reliable queue" pattern). The worker takes a message with BLMOVE into an in-flight
list of its own, and removes it from there in the same MULTI that records it as unacknowledged.
So a message is always in Redis: in the queue, in a consumer's in-flight list, or in kombu's
`unacked` hash. Each consuming channel keeps a liveness key alive (TTL = the visibility
timeout, the same promise kombu makes for unacknowledged messages); the restore sweep every
worker already runs puts the in-flight messages of a consumer whose liveness key ran out back at
the head of their queue. A consumer that was only slow may then deliver its copy as well: a
duplicate, which InfluxDB absorbs (same series and time), never a loss.

Limits. BLMOVE moves from one list: the reliable path is taken by a channel that consumes one
queue without priorities, which is what ha-ingestor's workers do (priority_steps is [0]: the
listener sends no priorities). Any other channel falls back to kombu's BRPOP and says so once;
no-ack consumers (replies to `celery inspect`, Flower's) take it silently, having chosen
at-most-once.
Needs Redis 6.2 or newer (BLMOVE); older servers fall back the same way.
"""

from __future__ import annotations

import logging
import uuid
from contextlib import suppress
from time import monotonic, time
from typing import Any

import kombu.transport
from kombu.exceptions import InconsistencyError
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads

from config.broker_kind import BROKER_SCHEMES, BrokerKind
from config.redis_keys import broker_alive, broker_consumers, broker_inflight
from workers.consumers import kombu_guard

log = logging.getLogger(__name__)

MIN_REDIS_VERSION = (6, 2)
"""BLMOVE and LMOVE arrived in Redis 6.2."""

# Put a silent consumer's in-flight messages back at the head of their queue (the right end,
# where consumers take from), oldest first, and forget the consumer. Atomic: a consumer whose
# liveness key exists is left alone. KEYS: in-flight list, liveness key, queue, consumers hash.
_RESTORE_ORPHANS = """
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
local moved = 0
while redis.call('LMOVE', KEYS[1], KEYS[3], 'LEFT', 'RIGHT') do moved = moved + 1 end
redis.call('HDEL', KEYS[4], ARGV[1])
return moved
"""


def takes_reliably(redis_version: str) -> bool:
    """Whether a Redis of this version (INFO's redis_version) has BLMOVE, which the reliable
    path needs."""
    parts = tuple(int(p) for p in redis_version.split(".")[:2] if p.isdigit())
    return parts >= MIN_REDIS_VERSION


class QoS(kombu_redis.QoS):
    """kombu's ack emulation; recording a message also takes it out of the in-flight list."""

    channel: Channel

    def append(self, message: Any, delivery_tag: str) -> None:
        taken = self.channel.take_untracked()
        if taken is None:
            super().append(message, delivery_tag)
            return
        delivery = message.delivery_info
        record = dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
        with self.pipe_or_acquire() as pipe:
            pipe.zadd(self.unacked_index_key, {delivery_tag: time()}).hset(
                self.unacked_key, delivery_tag, record
            ).lrem(self.channel.inflight_key, 1, taken).execute()
        virtual.QoS.append(self, message, delivery_tag)

    def restore_visible(self, start: int = 0, num: int = 10, interval: int = 10) -> None:
        """kombu's sweep of expired unacknowledged messages, then of silent consumers."""
        super().restore_visible(start, num, interval)
        self.channel.keep_alive()
        if (self._vrestore_count - 1) % (interval or 1) == 0:
            self.channel.restore_orphans()


class Channel(kombu_redis.Channel):
    """Takes messages with BLMOVE into its in-flight list when it consumes a single queue."""

    QoS = QoS
    _in_poll: Any  # kombu: False, a connection while a blocking take is sent, then None
    priority_steps = [0]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.consumer_id = uuid.uuid4().hex
        self.inflight_key = broker_inflight(self.consumer_id)
        self.alive_key = broker_alive(self.consumer_id)
        self._moving_from: str | None = None  # the queue a BLMOVE was sent for
        self._untracked: bytes | None = None  # taken, not yet recorded as unacknowledged
        self._alive_for: str | None = None  # the list the liveness key was last renewed for
        self._alive_renewed_at = float("-inf")
        self._fallback_said = False
        self._server_version: str | None = None
        self._no_ack_queues: dict[str, str] = {}  # consumer tag → queue, for no-ack consumers
        self._restore_script: Any = None

    # -- taking messages ------------------------------------------------------------------

    def basic_consume(
        self, queue: str, no_ack: bool, callback: Any, consumer_tag: str, **kwargs: Any
    ) -> Any:
        if no_ack:
            self._no_ack_queues[consumer_tag] = queue
        return super().basic_consume(queue, no_ack, callback, consumer_tag, **kwargs)

    def basic_cancel(self, consumer_tag: str) -> Any:
        self._no_ack_queues.pop(consumer_tag, None)
        return super().basic_cancel(consumer_tag)

    def _brpop_start(self, timeout: float | None = None) -> None:
        source = self._single_source()
        if source is None:
            super()._brpop_start(timeout)
            return
        key = source[1]
        self.keep_alive(key)
        if timeout is None:
            timeout = self.brpop_timeout
        self._in_poll = self.client.connection
        self._brpop_sent_at = monotonic()  # type: ignore[assignment]
        self._moving_from = source[0]
        self.client.connection.send_command(
            "BLMOVE", key, self.inflight_key, "RIGHT", "LEFT", timeout or 0
        )

    def _brpop_read(self, **options: Any) -> bool:
        if self._moving_from is None:
            return bool(super()._brpop_read(**options))
        queue = self._moving_from
        try:
            try:
                item = self.client.parse_response(self.client.connection, "BLMOVE", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            if item is None:
                raise virtual.Empty()
            self._untracked = item
            try:
                self.connection._deliver(loads(bytes_to_str(item)), queue)
            finally:
                self._forget_untracked()
            return True
        finally:
            self._in_poll = None
            self._moving_from = None
            self._flush_brpop_reauth()

    def take_untracked(self) -> bytes | None:
        """The raw message just taken, for QoS.append to record (once)."""
        taken, self._untracked = self._untracked, None
        return taken

    def _forget_untracked(self) -> None:
        """A message whose delivery failed before it was recorded leaves the in-flight list, as
        kombu's would have left the queue."""
        taken = self.take_untracked()
        if taken is None:
            return
        try:
            with self.conn_or_acquire() as client:
                client.lrem(self.inflight_key, 1, taken)
        except self.connection_errors:
            pass  # stays in flight: the sweep gives it back, a duplicate rather than a loss

    def _single_source(self) -> tuple[str, str] | None:
        """The (queue, list) a BLMOVE can take from, or None for kombu's BRPOP."""
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return None  # nothing to take from: kombu sends nothing either
        if set(queues) & set(self._no_ack_queues.values()):
            return None  # a no-ack consumer (e.g. replies to `celery inspect`) accepts losses
        why_not = self._why_not_blmove(len(queues))
        if why_not is None:
            return queues[0], self._q_for_pri(queues[0], self.priority_steps[0])
        if not self._fallback_said:
            self._fallback_said = True
            log.warning(
                "broker: taking messages with BRPOP because %s, so a worker killed at the wrong "
                "moment can lose the message it was taking. Consume one queue per worker, "
                "without priorities or global_keyprefix, on Redis 6.2 or newer.",
                why_not,
            )
        return None

    def _why_not_blmove(self, queues: int) -> str | None:
        if queues != 1:
            return f"this consumer takes from {queues} queues"
        if len(self.priority_steps) != 1:
            return f"priority_steps is {self.priority_steps}"
        if self.global_keyprefix:
            return "global_keyprefix is set"
        if self._server_version is None:
            try:
                with self.conn_or_acquire() as client:
                    version = str(client.info("server").get("redis_version", "0"))
            except self.ResponseError:  # INFO not allowed (ACL): assume a current server
                version = "{}.{}".format(*MIN_REDIS_VERSION)
            self._server_version = version
        if not takes_reliably(self._server_version):
            return f"Redis {self._server_version} is older than 6.2 (no BLMOVE)"
        return None

    # -- liveness and recovery ------------------------------------------------------------

    def keep_alive(self, queue_key: str | None = None) -> None:
        """Renew this consumer's liveness key (and where its in-flight messages belong), at
        most every quarter of its TTL."""
        key = queue_key or self._alive_for
        if key is None:
            return
        ttl = max(1, int(self.visibility_timeout))
        if key == self._alive_for and monotonic() - self._alive_renewed_at < ttl / 4:
            return
        with self.conn_or_acquire() as client:
            client.pipeline().set(self.alive_key, 1, ex=ttl).hset(
                broker_consumers(), self.consumer_id, key
            ).execute()
        self._alive_for, self._alive_renewed_at = key, monotonic()

    def restore_orphans(self) -> int:
        """Give back what consumers that stopped renewing their liveness key had taken."""
        restored = 0
        with self.conn_or_acquire() as client:
            if self._restore_script is None:
                self._restore_script = client.register_script(_RESTORE_ORPHANS)
            for raw_id, raw_key in client.hgetall(broker_consumers()).items():
                consumer = bytes_to_str(raw_id)
                if consumer == self.consumer_id:
                    continue
                moved = int(self._restore_script(
                    keys=[broker_inflight(consumer), broker_alive(consumer),
                          bytes_to_str(raw_key), broker_consumers()],
                    args=[consumer], client=client,
                ))  # fmt: skip
                if moved > 0:
                    log.warning(
                        "broker: %d message(s) taken by a worker that stopped responding are "
                        "back at the head of %s",
                        moved,
                        bytes_to_str(raw_key),
                    )
                    restored += moved
        return restored

    def close(self) -> None:
        """Read a BLMOVE already answered (kombu does the same for BRPOP), then give back
        whatever is still in flight and retire the liveness key."""
        if self._in_poll:
            with suppress(virtual.Empty):
                self._brpop_read()
        if self._alive_for is not None and not self.closed:
            with suppress(*self.connection_errors, InconsistencyError):
                self._retire()
        super().close()

    def _retire(self) -> None:
        assert self._alive_for is not None
        with self.conn_or_acquire() as client:
            client.delete(self.alive_key)
            client.eval(
                _RESTORE_ORPHANS, 4, self.inflight_key, self.alive_key, self._alive_for,
                broker_consumers(), self.consumer_id,
            )  # fmt: skip
        self._alive_for = None


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with the Channel above; install() registers it."""

    Channel = Channel


def install() -> None:
    """Make kombu take redis:// and rediss:// broker URLs with this transport, in this process.

    Registered under kombu's own scheme names, rather than named in Celery's `broker_transport`,
    so the URL keeps its scheme everywhere it is shown or parsed: the worker's banner, Flower's
    queue lengths, kombu's `rediss` TLS handling. IncompatibleKombu if the private hooks it
    overrides are not what it was written for (workers/consumers/kombu_guard.py).
    """
    kombu_guard.check()
    name = f"{__name__}:{Transport.__name__}"
    redis_schemes = [s for s, kind in BROKER_SCHEMES.items() if kind is BrokerKind.REDIS]
    for scheme in redis_schemes:
        if kombu.transport.TRANSPORT_ALIASES.get(scheme) != name:
            kombu.transport.TRANSPORT_ALIASES[scheme] = name
            kombu.transport._transport_cache.pop(scheme, None)  # resolved before: forget it
