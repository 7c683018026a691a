"""Every Redis key ha-ingestor uses, named in one place (DESIGN.md §3.4).

All keys live under the configured prefix (default ``ha_ingestor:``). Each function says who
writes the key, its type and its TTL.
"""

from __future__ import annotations

from dataclasses import dataclass

LISTENER_STATE_TTL_S = 30
"""The listener rewrites its state every few seconds; a missing key means a dead listener."""

COUNTER_BUCKET_TTL_S = 2 * 3600
"""Per-minute counter buckets are kept two hours: enough for 1/5/15-minute rates and an hour of
reconnect history."""

REGISTRY_TTL_S = 7 * 24 * 3600
"""Registries are refreshed on every connect and on registry updates; a week covers outages."""

IMPORT_RUN_TTL_S = 7 * 24 * 3600
"""An import run's progress keys outlive any import; a week, renewed while it runs."""

BEAT_STATE_TTL_S = 3600
"""Beat's memory between runs; after an hour without beat it starts afresh."""


@dataclass(frozen=True)
class RedisKeys:
    """Builds the key names for one prefix."""

    prefix: str = "ha_ingestor:"

    def for_destination(self, name: str) -> RedisKeys:
        """The keys of one destination's own state: its counters, last write error, dead
        letters, outage store and backlog. The `default` destination keeps the keys of before
        destinations existed; another lives under `<prefix>dest:<name>:`. Only those keys are
        read through the result: registries, the listener's state and beat's are shared."""
        return self if name == "default" else RedisKeys(f"{self.prefix}dest:{name}:")

    def for_home(self, instance: str | None) -> RedisKeys:
        """The keys of one home (HA_INSTANCE, a key-safe name: core/home_name.py), under
        `<prefix>home:<instance>:`, so homes sharing a Redis never overwrite each other's.
        None (a message from a listener older than home names) keeps the prefix-level keys.

        Read through the result: the registries and their version (written by that home's
        listener, read by the workers for that home's messages), and the listener's own keys:
        its listener_state, its counter buckets (events_received, reconnects) and its counter
        map buckets (events_by_entity, events_by_domain), written by that home's listener and
        read by beat and `status` for every home listed in `homes`."""
        return self if instance is None else RedisKeys(f"{self.prefix}home:{instance}:")

    def homes(self) -> str:
        """Hash home name → unix time of that home's last report, set by each listener's state
        reporter with every report (listener/health/state_reporter.py); no TTL, so beat finds a
        home that stopped reporting and names it. A listener removes its provisional name (used
        before its first login) once it knows its home's; `redis-cli HDEL <prefix>homes NAME`
        forgets a home for good."""
        return f"{self.prefix}homes"

    def backlog(self) -> str:
        """List of zlib-compressed JSON arrays of task messages waiting for this destination
        while it is unavailable and others are not (workers/stores/backlog.py), oldest first;
        never capped, no TTL. Only with several destinations."""
        return f"{self.prefix}backlog"

    def backlog_events(self) -> str:
        """Integer: task messages in the backlog (the list holds chunks); no TTL."""
        return f"{self.prefix}backlog:events"

    def parked(self) -> str:
        """String set while this destination is unavailable: workers then add their batches
        to its backlog instead of writing; deleted by the drainer once the backlog is empty.
        Holds the time it was set and why; no TTL."""
        return f"{self.prefix}parked"

    def drain_lock(self) -> str:
        """String held by the one worker draining this destination's backlog; TTL 10 s, renewed
        while it drains."""
        return f"{self.prefix}drain_lock"

    def listener_state(self) -> str:
        """String: one JSON object, core.listener_figures.ListenerFigures (its connection, counters,
        spool, started_at and reported_at, each field with its JSON type), written by the
        listener every 2 s; TTL 30 s. Read by beat and `status`; a hash there (left by an older
        listener) reads as no state."""
        return f"{self.prefix}listener:state"

    def counter(self, name: str) -> str:
        """Integer total since the counter was created (written, skipped:<rule>, …); no TTL."""
        return f"{self.prefix}count:{name}"

    def counter_bucket(self, name: str, minute: int) -> str:
        """Integer count of `name` during one minute (unix minute); TTL 2 h."""
        return f"{self.prefix}rate:{name}:{minute}"

    def dead_letters(self) -> str:
        """Stream of dead letters (event, reason, error text, time); capped only when
        DEAD_LETTERS_MAX is set."""
        return f"{self.prefix}dead_letters"

    def outage_letters(self) -> str:
        """Stream of events that waited longer than MAX_EVENT_AGE for InfluxDB (same fields as
        dead letters, reason too_old_during_outage); never capped; emptied by AutoReplay."""
        return f"{self.prefix}dead_letters:outage"

    def dead_letters_auto_replay(self) -> str:
        """Set of dead-letter ids a worker replays by itself once InfluxDB takes writes again
        (reason too_old_during_outage), as versions before the outage store kept them; only
        emptied now (by AutoReplay and purge); no TTL."""
        return f"{self.prefix}dead_letters:auto_replay"

    def dead_letters_replay_lock(self) -> str:
        """String held by the one worker replaying outage dead letters; TTL 120 s."""
        return f"{self.prefix}dead_letters:replay_lock"

    def registry(self, kind: str) -> str:
        """JSON of one of HA's registries (REGISTRIES in listener/ha/registries.py), written by the
        listener; TTL a week. Per home (`for_home`): a listener writes its own home's."""
        return f"{self.prefix}registry:{kind}"

    def registry_version(self) -> str:
        """Counter the listener increments each time it stores a registry; workers read it at
        most twice a second and re-read the registries when it changed; TTL a week."""
        return f"{self.prefix}registry:version"

    def health(self) -> str:
        """JSON health report computed by beat (core/health_report.py's shape, as /health), read
        back by the listener for beat's figures; TTL a few beat periods."""
        return f"{self.prefix}health"

    def rates(self) -> str:
        """JSON event rates computed by beat; TTL a few beat periods."""
        return f"{self.prefix}rates"

    def counter_map_bucket(self, name: str, minute: int) -> str:
        """Hash member → count during one minute (events_by_domain, events_by_entity), written
        by the listener's state reporter; TTL 2 h."""
        return f"{self.prefix}ratemap:{name}:{minute}"

    def beat_state(self) -> str:
        """JSON beat keeps between runs (queue depth samples, time of the last progress);
        TTL 1 h."""
        return f"{self.prefix}beat:state"

    def import_done(self, run: str) -> str:
        """Bitmap of one `ha-ingestor import` run: bit `seq` is set once that message is
        written, skipped by a rule or dead-lettered (workers/stores/import_runs.py); the command
        counts the bits to know when it is finished (a redelivery sets a bit again, harmless).
        TTL IMPORT_RUN_TTL_S, renewed by each batch."""
        return f"{self.prefix}import:{run}:done"

    def import_counts(self, run: str) -> str:
        """Hash of one import run: `written`, `skipped`, `dead_lettered` messages (a
        redelivered message counts again), added by workers; TTL IMPORT_RUN_TTL_S."""
        return f"{self.prefix}import:{run}:counts"

    def last_write_error(self) -> str:
        """String: InfluxDB's error text for the latest failed write (secrets scrubbed, at most
        1000 characters), set by workers at each failed write (workers/stores/counter_store.py) and
        quoted by beat's `write_errors` reason; TTL = HEALTH_WINDOW."""
        return f"{self.prefix}last_write_error"


# Keys of the workers' bulk consumer (workers/consumers/bulk_queue.py). They live in the broker's
# Redis beside kombu's own (`unacked`, `_kombu.binding.*`), so they take no configurable prefix.


def broker_inflight(consumer: str) -> str:
    """List of the messages one consumer has taken from its queue and not finished (its batch
    being written, oldest first); no TTL, Redis drops it when empty. A sweep moves it back to
    the queue once the consumer's liveness key has expired."""
    return f"_ha_ingestor.inflight.{consumer}"


def broker_alive(consumer: str) -> str:
    """String renewed by a consumer's own liveness thread every quarter of its TTL;
    TTL = WORKER_LIVENESS_TIMEOUT (20 s by default)."""
    return f"_ha_ingestor.alive.{consumer}"


def broker_consumers() -> str:
    """Hash consumer id → the queue list it takes from; an entry is removed when the consumer
    closes, or by the restore sweep once its liveness key has expired."""
    return "_ha_ingestor.consumers"


def broker_given_back() -> str:
    """Integer: messages a sweep gave back from consumers that stopped renewing their liveness
    key (workers/consumers/bulk_queue.py), since the broker's Redis was created; no TTL. Beat
    reports it (/health `pipeline.given_back`, /metrics `ha_ingestor_messages_given_back_total`)."""
    return "_ha_ingestor.given_back"
