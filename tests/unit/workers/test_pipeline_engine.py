"""The pipeline's retry, bisect and hand-back engine, one table row per named outcome.

workers/pipeline.py takes its sink, dead-letter store, counters, backoff, stop event and clocks
as parameters, so every decision it makes is proved here in milliseconds: an in-memory sink
scripted to fail the way InfluxDB fails (tests/memory_sink.py), in-memory dead letters and
counters behind the same callables the Redis stores provide, and virtual time in which an outage
of minutes passes at once while each wait is recorded (tests/virtual_time.py). The same outcomes
against real servers: tests/integration/workers/test_pipeline*.py.

Every row asserts the whole BatchOutcome, the counters as the counter store would total them,
the dead letters with their exact error text, each wait, every write request and what the sink
stored — and that each message ended in exactly one outcome.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from core.backoff import exponential_backoff
from core.rules import Rules
from core.victoria_lines import TextGuard, encode_victoria
from tests.memory_sink import MemorySink
from tests.virtual_time import StopEvent, VirtualTime
from workers.pipeline import LIVE_COUNTERS, BatchOutcome, IngestPipeline, TagsFor
from workers.sinks.field_types import FieldTypeCache
from workers.stores.dead_letters import TOO_OLD_DURING_OUTAGE

WALL = VirtualTime().time()
"""The wall clock when a batch starts; a message's age is counted back from it."""
T0 = "2026-11-26T22:23:23.441045+00:00"
DOWN = "cannot reach InfluxDB at memory: connection refused"
CONFLICT = (
    'partial write: field type conflict: input field "value" on measurement "sensor.victim" is '
    "type float, already exists as type string dropped=1"
)
COLUMN_CONFLICT = (
    "invalid column type for column 'value', expected iox::column_type::field::string, "
    "got iox::column_type::field::float"
)
"""InfluxDB 3's refusal of one line for its type."""
LP_ERROR = "No fields were provided"
UNPARSABLE = "unable to parse 'sensor.other,domain=sensor': missing fields"
REDIS_DOWN = "Error 111 connecting to 127.0.0.1:6379. Connection refused."
OLD = 120.0
"""An age beyond the rows' MAX_EVENT_AGE of 60 s."""


def backoff() -> Iterator[float]:
    """The real backoff generator without its jitter: 1, 2, 4, 8, 8, … seconds."""
    return exponential_backoff(initial=1.0, factor=2.0, cap=8.0, jitter=lambda delay: delay)


def event(entity_id: str, state: Any = "1", attributes: Any = None) -> dict[str, Any]:
    new_state = {
        "entity_id": entity_id,
        "state": state,
        "attributes": attributes or {},
        "last_updated": T0,
    }
    return {
        "event_type": "state_changed",
        "data": {"entity_id": entity_id, "old_state": None, "new_state": new_state},
    }


def msg(seq: int, ev: Any = None, *, age: float = 0.0) -> dict[str, Any]:
    """Task message `seq` (about sensor.s<seq> unless `ev` says otherwise), `age` s old."""
    return {
        "event": event(f"sensor.s{seq}") if ev is None else ev,
        "received_at": WALL - age,
        "source": "live",
        "seq": seq,
    }


def batch(n: int, **special: dict[str, Any]) -> tuple[Any, ...]:
    """n messages about sensor.s0 … sensor.s<n-1>; `special` replaces some: s3=msg(3, …)."""
    return tuple(special.get(f"s{i}", msg(i)) for i in range(n))


def victim(seq: int, name: str = "victim") -> dict[str, Any]:
    """Message `seq` about sensor.<name>, a point the rows' sinks refuse by that name."""
    return msg(seq, event(f"sensor.{name}"))


def too_old_error(text: str = DOWN) -> str:
    return (
        f"waited more than 60 s (MAX_EVENT_AGE) while InfluxDB was unavailable ({text}); "
        "replayed automatically once writes succeed again"
    )


def tags_refusing(entity_id: str) -> TagsFor:
    """Enrichment that fails for one entity: a failure the transform did not foresee."""

    def tags_for(wanted: str, _home: str | None = None) -> Mapping[str, str]:
        if wanted == entity_id:
            raise RuntimeError("registry cache holds a list, not an object")
        return {}

    return tags_for


class MemoryDeadLetters:
    """The dead-letter store's `add_many` in memory, down for its first `down_for` calls."""

    def __init__(self, down_for: int = 0) -> None:
        self.letters: list[tuple[Any, str, str]] = []
        self._down_for = down_for

    def add_many(self, letters: list[tuple[Any, str, str]]) -> None:
        if self._down_for > 0:
            self._down_for -= 1
            raise ConnectionError(REDIS_DOWN)
        self.letters.extend(letters)


@dataclass(frozen=True)
class Case:
    """One scenario: the batch, how the servers behave, and everything that must follow."""

    id: str
    messages: tuple[Any, ...]
    outcome: BatchOutcome
    sink: Callable[[MemorySink], object] = lambda sink: None
    counters: Mapping[str, int] = field(default_factory=dict)
    """Totals as the counter store would add them up (zeros left out)."""
    letters: tuple[tuple[int | None, str, str], ...] = ()
    """(seq, reason, exact error text) of each dead letter, in the order stored."""
    waits: tuple[float, ...] = ()
    requests: tuple[int, ...] = ()
    """Lines in each write request, in order."""
    stored: tuple[int, ...] = ()
    """The seqs whose points the sink stored, in order."""
    max_event_age: float = math.inf
    hold_limit: float = math.inf
    dead_letter_store_down_for: int = 0
    stop_after_waits: int | None = None
    tags_for: TagsFor | None = None
    log: str = ""
    """Words the worker's log must hold."""


CASES = [
    Case(
        "written",
        batch(3),
        BatchOutcome(written=3),
        counters={"written": 3},
        requests=(3,),
        stored=(0, 1, 2),
    ),
    Case(
        "skipped by a named rule",
        (
            msg(0),
            msg(1, event("sensor.s1", "unavailable")),
            msg(2, {"event_type": "call_service", "data": {}}),
            msg(3, {"event_type": "state_changed", "data": {"new_state": None}}),
        ),
        BatchOutcome(
            written=1,
            skipped=Counter(ignored_state=1, not_a_state_event=1, no_new_state=1),
            skipped_indexes=[1, 2, 3],
        ),
        counters={
            "written": 1,
            "skipped:ignored_state": 1,
            "skipped:not_a_state_event": 1,
            "skipped:no_new_state": 1,
        },
        requests=(1,),
        stored=(0,),
    ),
    Case(
        "a point cut to the limits is written and counted as capped",
        (msg(0, event("sensor.s0", "1", {f"a{i}": i for i in range(300)})),),
        BatchOutcome(written=1, capped=1),
        counters={"written": 1, "capped": 1},
        requests=(1,),
        stored=(0,),
    ),
    Case(
        "what cannot be understood is dead-lettered as invalid_event",
        ("not a message", {**msg(1), "received_at": "yesterday"}, msg(2)),
        BatchOutcome(written=1, dead_lettered=Counter(invalid_event=2)),
        counters={"written": 1, "dead_lettered": 2, "dead_lettered:invalid_event": 2},
        letters=(
            (None, "invalid_event", "task argument is a str, not an object"),
            (1, "invalid_event", "'received_at' is missing or not a number"),
        ),
        requests=(1,),
        stored=(2,),
    ),
    Case(
        "a failure the transform did not foresee is dead-lettered as transform_error",
        batch(3),
        BatchOutcome(written=2, dead_lettered=Counter(transform_error=1)),
        tags_for=tags_refusing("sensor.s1"),
        counters={"written": 2, "dead_lettered": 1, "dead_lettered:transform_error": 1},
        letters=(
            (1, "transform_error", "RuntimeError('registry cache holds a list, not an object')"),
        ),
        requests=(2,),
        stored=(0, 2),
        log="could not transform an event; it is kept as a dead letter",
    ),
    Case(
        "unavailable twice, then written: retried after the backoff's delays",
        batch(3),
        BatchOutcome(written=3, retries=2, write_errors=2),
        sink=lambda sink: sink.unavailable(2),
        counters={"written": 3, "retries": 2, "write_errors": 2},
        waits=(1.0, 2.0),
        requests=(3, 3, 3),
        stored=(0, 1, 2),
        log="InfluxDB accepts writes again",
    ),
    Case(
        "429 with Retry-After: the wait is the server's, not the shorter backoff",
        batch(2),
        BatchOutcome(written=2, retries=1, write_errors=1),
        sink=lambda sink: sink.unavailable(1, status=429, retry_after=7.0),
        counters={"written": 2, "retries": 1, "write_errors": 1},
        waits=(7.0,),
        requests=(2, 2),
        stored=(0, 1),
    ),
    Case(
        "503 with a Retry-After shorter than the backoff: the backoff is kept",
        batch(2),
        BatchOutcome(written=2, retries=1, write_errors=1),
        sink=lambda sink: sink.unavailable(1, status=503, retry_after=0.25),
        counters={"written": 2, "retries": 1, "write_errors": 1},
        waits=(1.0,),
        requests=(2, 2),
        stored=(0, 1),
    ),
    Case(
        "429 asking for longer than the hold limit leaves: handed back at once, with it",
        batch(3),
        BatchOutcome(retries=1, write_errors=1, handed_back=[0, 1, 2], retry_after=120.0),
        sink=lambda sink: sink.unavailable(status=429, retry_after=120.0),
        hold_limit=60.0,
        counters={"retries": 1, "write_errors": 1},
        requests=(3,),
        log="InfluxDB asks to wait 120 s (Retry-After), more than the hold limit leaves",
    ),
    Case(
        "down past the hold limit: handed back before the next wait would pass it",
        batch(3),
        BatchOutcome(retries=3, write_errors=3, handed_back=[0, 1, 2]),
        sink=lambda sink: sink.unavailable(),
        hold_limit=5.0,
        counters={"retries": 3, "write_errors": 3},
        waits=(1.0, 2.0),  # a third wait of 4 s would end at 7 s > 5 s
        requests=(3, 3, 3),
        log="3 events handed back to the broker unwritten (InfluxDB unavailable for 5 s)",
    ),
    Case(
        "the worker stops while waiting: handed back at once",
        batch(2),
        BatchOutcome(retries=1, write_errors=1, handed_back=[0, 1]),
        sink=lambda sink: sink.unavailable(),
        stop_after_waits=1,
        counters={"retries": 1, "write_errors": 1},
        waits=(1.0,),
        requests=(2,),
        log="2 events handed back to the broker unwritten (the worker is stopping)",
    ),
    Case(
        "too old during an outage: to the outage letters; the young ones are handed back",
        (msg(0, age=OLD), msg(1), msg(2, age=OLD)),
        BatchOutcome(
            retries=3,
            write_errors=3,
            dead_lettered=Counter({TOO_OLD_DURING_OUTAGE: 2}),
            handed_back=[1],
        ),
        sink=lambda sink: sink.unavailable(),
        max_event_age=60.0,
        hold_limit=5.0,
        # Not a dead letter for a person: counted under its reason alone.
        counters={"retries": 3, "write_errors": 3, f"dead_lettered:{TOO_OLD_DURING_OUTAGE}": 2},
        letters=(
            (0, TOO_OLD_DURING_OUTAGE, too_old_error()),
            (2, TOO_OLD_DURING_OUTAGE, too_old_error()),
        ),
        waits=(1.0, 2.0),
        requests=(3, 1, 1),
    ),
    Case(
        "an event that ages past the limit while waiting leaves the batch then",
        (msg(0, age=50.0),),
        BatchOutcome(retries=5, write_errors=5, dead_lettered=Counter({TOO_OLD_DURING_OUTAGE: 1})),
        sink=lambda sink: sink.unavailable(),
        max_event_age=60.0,
        counters={"retries": 5, "write_errors": 5, f"dead_lettered:{TOO_OLD_DURING_OUTAGE}": 1},
        letters=((0, TOO_OLD_DURING_OUTAGE, too_old_error()),),
        waits=(1.0, 2.0, 4.0, 8.0),  # 50 s old, then 51, 53, 57 and 65 s at the five attempts
        requests=(1, 1, 1, 1, 1),
    ),
    Case(
        "an old event is written when InfluxDB takes it: age matters only in an outage",
        (msg(0, age=10 * 86_400.0),),
        BatchOutcome(written=1),
        max_event_age=60.0,
        counters={"written": 1},
        requests=(1,),
        stored=(0,),
    ),
    Case(
        "a rejected point is isolated by bisection and dead-lettered with the store's text",
        batch(8, s5=victim(5)),
        BatchOutcome(written=7, write_errors=4, dead_lettered=Counter(rejected_by_influxdb=1)),
        sink=lambda sink: sink.refuse("entity_id=victim ", CONFLICT),
        counters={
            "written": 7,
            "write_errors": 4,
            "dead_lettered": 1,
            "dead_lettered:rejected_by_influxdb": 1,
        },
        letters=((5, "rejected_by_influxdb", CONFLICT),),
        requests=(8, 4, 4, 2, 1, 1, 2),
        stored=(0, 1, 2, 3, 4, 6, 7),
    ),
    Case(
        "two rejected points: each dead-lettered with its own text",
        batch(4, s0=victim(0), s3=victim(3, "other")),
        BatchOutcome(written=2, write_errors=5, dead_lettered=Counter(rejected_by_influxdb=2)),
        sink=lambda sink: sink.refuse("entity_id=victim ", CONFLICT).refuse(
            "entity_id=other ", UNPARSABLE
        ),
        counters={
            "written": 2,
            "write_errors": 5,
            "dead_lettered": 2,
            "dead_lettered:rejected_by_influxdb": 2,
        },
        letters=((0, "rejected_by_influxdb", CONFLICT), (3, "rejected_by_influxdb", UNPARSABLE)),
        requests=(4, 2, 1, 1, 2, 1, 1),
        stored=(1, 2),
    ),
    Case(
        "a request too large (413) is split until it fits: nothing dead-lettered",
        batch(8),
        BatchOutcome(written=8, write_errors=3),
        sink=lambda sink: sink.refuse_larger_than(3),
        counters={"written": 8, "write_errors": 3},
        requests=(8, 4, 2, 2, 4, 2, 2),
        stored=(0, 1, 2, 3, 4, 5, 6, 7),
    ),
    Case(
        "rejected, then down mid-bisection: the unfinished halves are handed back",
        batch(4, s0=victim(0)),
        BatchOutcome(
            retries=3,
            write_errors=6,
            dead_lettered=Counter(rejected_by_influxdb=1),
            handed_back=[1, 2, 3],
        ),
        sink=lambda sink: sink.refuse("entity_id=victim ", CONFLICT).unavailable(after=3),
        hold_limit=5.0,
        counters={
            "retries": 3,
            "write_errors": 6,
            "dead_lettered": 1,
            "dead_lettered:rejected_by_influxdb": 1,
        },
        letters=((0, "rejected_by_influxdb", CONFLICT),),
        waits=(1.0, 2.0),
        requests=(4, 2, 1, 1, 1, 1),
    ),
    Case(
        "the dead-letter store down for a moment: retried, then stored",
        ("not a message", msg(1)),
        BatchOutcome(written=1, dead_lettered=Counter(invalid_event=1)),
        dead_letter_store_down_for=1,
        counters={"written": 1, "dead_lettered": 1, "dead_lettered:invalid_event": 1},
        letters=((None, "invalid_event", "task argument is a str, not an object"),),
        waits=(1.0,),
        requests=(1,),
        stored=(1,),
        log=f"cannot store dead letters ({REDIS_DOWN}); retrying in 1.0 s",
    ),
    Case(
        "the dead-letter store down past the hold limit: the whole batch goes back untouched",
        ("not a message", msg(1)),
        BatchOutcome(handed_back=[0, 1]),
        dead_letter_store_down_for=100,
        hold_limit=5.0,
        waits=(1.0, 2.0),
        log="check REDIS_URL and that Redis answers",
    ),
    Case(
        "too old during an outage while the dead-letter store is down: handed back whole",
        (msg(0, age=OLD), msg(1)),
        BatchOutcome(retries=1, write_errors=1, handed_back=[0, 1]),
        sink=lambda sink: sink.unavailable(),
        max_event_age=60.0,
        hold_limit=5.0,
        dead_letter_store_down_for=100,
        counters={"retries": 1, "write_errors": 1},
        waits=(1.0, 2.0),
        requests=(2,),
    ),
    Case(
        "a partial write dead-letters exactly the refused points and sends no stored one again",
        batch(5, s1=victim(1), s3=victim(3, "broken")),
        BatchOutcome(written=3, write_errors=1, dead_lettered=Counter(rejected_by_influxdb=2)),
        sink=lambda sink: sink.refuse_lines("entity_id=victim ", COLUMN_CONFLICT).refuse_lines(
            "entity_id=broken ", LP_ERROR
        ),
        counters={
            "written": 3,
            "write_errors": 1,
            "dead_lettered": 2,
            "dead_lettered:rejected_by_influxdb": 2,
        },
        letters=(
            (1, "rejected_by_influxdb", COLUMN_CONFLICT),
            (3, "rejected_by_influxdb", LP_ERROR),
        ),
        requests=(5,),
        stored=(0, 2, 4),
    ),
    Case(
        "a partial write refusing every point dead-letters each, without a retry or a split",
        (victim(0), victim(1, "broken")),
        BatchOutcome(write_errors=1, dead_lettered=Counter(rejected_by_influxdb=2)),
        sink=lambda sink: sink.refuse_lines("entity_id=victim ", COLUMN_CONFLICT).refuse_lines(
            "entity_id=broken ", LP_ERROR
        ),
        counters={"write_errors": 1, "dead_lettered": 2, "dead_lettered:rejected_by_influxdb": 2},
        letters=(
            (0, "rejected_by_influxdb", COLUMN_CONFLICT),
            (1, "rejected_by_influxdb", LP_ERROR),
        ),
        requests=(2,),
    ),
    Case(
        "a partial write after an outage: the retry, then only the refused point dead-lettered",
        batch(3, s1=victim(1)),
        BatchOutcome(
            written=2, retries=1, write_errors=2, dead_lettered=Counter(rejected_by_influxdb=1)
        ),
        sink=lambda sink: sink.unavailable(1).refuse_lines("entity_id=victim ", COLUMN_CONFLICT),
        counters={
            "written": 2,
            "retries": 1,
            "write_errors": 2,
            "dead_lettered": 1,
            "dead_lettered:rejected_by_influxdb": 1,
        },
        letters=((1, "rejected_by_influxdb", COLUMN_CONFLICT),),
        waits=(1.0,),
        requests=(3, 3),
        stored=(0, 2),
    ),
]


def totals(counts: list[Mapping[str, int]]) -> dict[str, int]:
    """The counters as the counter store adds them up, zeros left out."""
    total: Counter[str] = Counter()
    for added in counts:
        total.update(added)
    return {name: n for name, n in total.items() if n}


@dataclass
class Run:
    """What one batch did to its surroundings."""

    outcome: BatchOutcome
    sink: MemorySink
    dead_letters: MemoryDeadLetters
    counts: list[Mapping[str, int]]
    notes: list[str]
    waits: list[float]

    def totals(self) -> dict[str, int]:
        return totals(self.counts)

    def stored_seqs(self, messages: Sequence[Any]) -> list[int]:
        """The seq of the message behind each stored line (its entity is unique in the batch)."""
        seqs = {
            m["event"]["data"]["entity_id"].split(".", 1)[1]: m["seq"]
            for m in messages
            if isinstance(m, dict) and "entity_id" in m["event"].get("data", {})
        }
        stored = []
        for line in self.sink.stored:
            found = re.search(r",entity_id=([^ ,]+)", line)
            assert found, line
            stored.append(seqs[found[1]])
        return stored


def run(
    messages: Sequence[Any],
    *,
    sink: MemorySink | None = None,
    dead_letters: MemoryDeadLetters | None = None,
    stop_after_waits: int | None = None,
    **kwargs: Any,
) -> Run:
    time = VirtualTime()
    stopping = StopEvent(time, stop_after_waits)
    sink = sink or MemorySink()
    dead_letters = dead_letters or MemoryDeadLetters()
    counts: list[Mapping[str, int]] = []
    notes: list[str] = []
    pipeline = IngestPipeline(
        rules=Rules(),
        sink=sink,
        dead_letters=dead_letters.add_many,
        count=counts.append,
        note_write_error=notes.append,
        backoff=backoff,
        stopping=stopping,
        clock=time.monotonic,
        wall_clock=time.time,
        # Each delay whole in `waits`; the probing within is test_return_watch.py's.
        probe_interval=math.inf,
        **kwargs,
    )
    outcome = pipeline.process(messages)
    return Run(outcome, sink, dead_letters, counts, notes, stopping.waits)


def _letter_seq(message: Any) -> int | None:
    return message.get("seq") if isinstance(message, dict) else None


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_each_named_outcome(case: Case, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="workers.pipeline")
    sink = MemorySink()
    case.sink(sink)
    done = run(
        case.messages,
        sink=sink,
        dead_letters=MemoryDeadLetters(case.dead_letter_store_down_for),
        stop_after_waits=case.stop_after_waits,
        tags_for=case.tags_for,
        max_event_age=case.max_event_age,
        hold_limit=case.hold_limit,
    )

    assert done.outcome == case.outcome
    assert done.totals() == case.counters
    letters = [(_letter_seq(m), reason, error) for m, reason, error in done.dead_letters.letters]
    assert letters == list(case.letters)
    assert done.waits == list(case.waits)
    assert [len(request) for request in sink.requests] == list(case.requests)
    assert done.stored_seqs(case.messages) == list(case.stored)
    assert case.log in caplog.text
    # Each message ends in exactly one outcome.
    outcome = done.outcome
    assert outcome.written + sum(outcome.skipped.values()) + sum(
        outcome.dead_lettered.values()
    ) + len(outcome.handed_back) == len(case.messages)


def test_retries_and_write_errors_are_counted_as_they_happen_the_rest_per_batch() -> None:
    """An outage shows in the counters while the batch still waits (DESIGN §6)."""
    done = run(batch(2), sink=MemorySink().unavailable(2))

    assert done.counts[:2] == [{"retries": 1, "write_errors": 1}] * 2
    [final] = done.counts[2:]
    assert not set(final) & set(LIVE_COUNTERS)
    assert final["written"] == 2


def test_every_failed_write_leaves_its_text_for_the_health_report() -> None:
    sink = (
        MemorySink()
        .unavailable(1, text="InfluxDB at memory answered 503")
        .refuse("entity_id=victim ", CONFLICT)
    )
    done = run((victim(0),), sink=sink)

    assert done.notes == [
        "InfluxDB at memory answered 503",
        f"InfluxDB rejected the points (400): {CONFLICT}",
    ]


def test_a_partial_type_clash_moves_only_the_refused_value_to_its_shadow() -> None:
    """InfluxDB 3 names the column, the refused line names the measurement: the clashing value
    goes to its shadow and only that point is written again."""
    sink = MemorySink().refuse_lines("entity_id=victim value=", COLUMN_CONFLICT)
    done = run(batch(3, s1=victim(1)), sink=sink, field_types=FieldTypeCache())

    assert done.outcome == BatchOutcome(written=3, write_errors=1, type_shadowed=1)
    assert [len(request) for request in sink.requests] == [3, 1]
    assert done.stored_seqs(batch(3, s1=victim(1))) == [0, 2, 1]
    assert "entity_id=victim value_float=1.0" in sink.stored[-1]
    assert done.dead_letters.letters == []


def test_a_partial_refusal_no_shadow_can_take_is_dead_lettered() -> None:
    sink = MemorySink().refuse_lines("entity_id=victim ", LP_ERROR)
    done = run(batch(2, s1=victim(1)), sink=sink, field_types=FieldTypeCache())

    assert done.outcome == BatchOutcome(
        written=1, write_errors=1, dead_lettered=Counter(rejected_by_influxdb=1)
    )
    assert [len(request) for request in sink.requests] == [2]


def test_a_batch_with_nothing_to_write_sends_nothing() -> None:
    done = run(("not a message", msg(1, event("sensor.s1", "unknown"))))

    assert done.sink.requests == []
    assert done.outcome == BatchOutcome(
        dead_lettered=Counter(invalid_event=1),
        skipped=Counter(ignored_state=1),
        skipped_indexes=[1],
    )


@pytest.mark.parametrize(
    ("down_for", "hold_limit", "expected", "letters"),
    [
        (0, math.inf, BatchOutcome(dead_lettered=Counter(worker_error=2)), 2),
        (1, math.inf, BatchOutcome(dead_lettered=Counter(worker_error=2)), 2),
        (100, 5.0, BatchOutcome(handed_back=[0, 1]), 0),
    ],
    ids=["stored", "stored after the store came back", "handed back past the hold limit"],
)
def test_a_batch_the_pipeline_did_not_foresee_is_kept_whole(
    down_for: int, hold_limit: float, expected: BatchOutcome, letters: int
) -> None:
    time = VirtualTime()
    store = MemoryDeadLetters(down_for)
    counts: list[Mapping[str, int]] = []
    pipeline = IngestPipeline(
        rules=Rules(),
        sink=MemorySink(),
        dead_letters=store.add_many,
        count=counts.append,
        backoff=backoff,
        stopping=StopEvent(time),
        hold_limit=hold_limit,
        clock=time.monotonic,
        wall_clock=time.time,
    )
    outcome = pipeline.dead_letter_all([msg(0), "x"], "worker_error", "RuntimeError()")

    assert outcome == expected
    assert [(reason, error) for _, reason, error in store.letters] == [
        ("worker_error", "RuntimeError()")
    ] * letters
    expected_counts = {"dead_lettered": 2, "dead_lettered:worker_error": 2} if letters else {}
    assert totals(counts) == expected_counts


def test_a_store_with_its_own_encoder_receives_its_lines() -> None:
    """VictoriaMetrics brings its encoder: each text becomes a labelled line of its own."""
    guard = TextGuard(10, 3600 * 10**9)
    done = run(
        (msg(1, event("binary_sensor.door", "on")),),
        encode=lambda point, precision: encode_victoria(point, guard, precision).text,
    )
    assert done.outcome.written == 1
    [(line,)] = done.sink.requests
    numbers, text = line.split("\n")
    series = "binary_sensor.door,domain=binary_sensor,entity_id=door"
    assert numbers.startswith(f"{series} value=1.0 ")
    assert text.startswith(f"{series},state=on state=1.0 ")
    assert '"' not in line, "no text field left for VictoriaMetrics to zero"
