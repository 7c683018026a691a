"""What became of each message of an `ha-ingestor import` run, counted in Redis.

The import command publishes messages numbered 0..N-1 within its run (core.task_message
`run`, `seq`) and exits 0 only once every one is finished. A worker marks each finished
message of a batch in the run's bitmap (written, skipped by a rule, or dead-lettered: a
handed-back message is not finished) and adds to the run's counts. Bits make completion exact
and idempotent: a redelivered message sets its bit again.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Protocol

import redis

from config.redis_keys import IMPORT_RUN_TTL_S, RedisKeys

log = logging.getLogger(__name__)


class SettledBatch(Protocol):
    """What `record` reads of a batch's outcome (the pipeline's BatchOutcome has it): which
    messages went back to the broker and which were skipped, by index."""

    @property
    def handed_back(self) -> Sequence[int]: ...

    @property
    def skipped_indexes(self) -> Sequence[int]: ...


def run_of(raw: Any) -> tuple[str, int] | None:
    """(run, seq) of an import message, None for any other message."""
    if not isinstance(raw, Mapping):
        return None
    run, seq = raw.get("run"), raw.get("seq")
    if not isinstance(run, str) or isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        return None
    return run, seq


class ImportRuns:
    """Marks finished import messages per run; errors only log (the events are written)."""

    def __init__(self, client: redis.Redis, keys: RedisKeys) -> None:
        self._redis = client
        self._keys = keys

    def record(
        self, messages: Sequence[Any], outcome: SettledBatch, lettered: Collection[int]
    ) -> None:
        """`lettered`: ids (`id()`) of the messages of this batch stored as dead letters."""
        runs = [(index, found) for index, raw in enumerate(messages) if (found := run_of(raw))]
        if not runs:
            return
        back = set(outcome.handed_back)
        skipped = set(outcome.skipped_indexes)
        counts: Counter[tuple[str, str]] = Counter()
        done: dict[str, list[int]] = {}
        for index, (run, seq) in runs:
            if index in back:
                continue
            if id(messages[index]) in lettered:
                kind = "dead_lettered"
            elif index in skipped:
                kind = "skipped"
            else:
                kind = "written"
            counts[(run, kind)] += 1
            done.setdefault(run, []).append(seq)
        if not done:
            return
        keys = self._keys
        pipe = self._redis.pipeline(transaction=False)
        for run, seqs in done.items():
            bitmap = keys.import_done(run)
            for seq in seqs:
                pipe.setbit(bitmap, seq, 1)
            pipe.expire(bitmap, IMPORT_RUN_TTL_S)
        for (run, kind), n in counts.items():
            pipe.hincrby(keys.import_counts(run), kind, n)
            pipe.expire(keys.import_counts(run), IMPORT_RUN_TTL_S)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            log.warning(
                "could not record import progress in Redis (%s): the events are written; the "
                "import command will wait for them and may have to be run again",
                exc,
            )
