"""What each measurement's fields are in the store, learnt from the store and kept per worker.

Learnt when a write is refused for a field's type, not before: a home whose database only
ha-ingestor fills never clashes, and pays no query (nor does VictoriaMetrics, which keeps no
types and has no schema query). Then the refusal's text names the field and the type it holds
(core/field_types.py reads it); on InfluxDB 1.x `SHOW FIELD KEYS` also tells the measurement's
other fields at once, so one refusal teaches every clash of that measurement. Each refusal that
says something new refreshes the measurement; the pipeline (workers/pipeline.py) then moves the
clashing values to their shadows and writes the batch again. What was learnt is forgotten after
`keep_s`, so values go back to their own fields by themselves once a person has fixed the stored
schema; where the clash remains, that costs one refused write a measurement.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping

from core.field_types import Conflict, FieldTypes, conflicts_in
from workers.sinks.errors import SinkError

log = logging.getLogger(__name__)

SchemaQuery = Callable[[str], Mapping[str, Iterable[str]]]
"""Measurement → {field: the types the store holds it with} (V1Sink.field_types)."""

_NO_TYPES: FieldTypes = {}


class FieldTypeCache:
    """Field types per measurement, only for measurements that clashed once."""

    def __init__(
        self,
        schema: SchemaQuery | None = None,
        *,
        keep_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._schema = schema
        self._keep_s = keep_s
        self._clock = clock
        self._types: dict[str, dict[str, str]] = {}
        self._learnt_at: dict[str, float] = {}
        self._told: set[tuple[str, str]] = set()
        """(measurement, field) already warned about: relearning each hour only logs info."""

    def held(self, measurement: str) -> FieldTypes:
        """The types known for the measurement's fields; empty until it clashed."""
        known = self._types.get(measurement)
        if known is None:
            return _NO_TYPES
        if self._clock() - self._learnt_at[measurement] > self._keep_s:
            del self._types[measurement], self._learnt_at[measurement]
            return _NO_TYPES
        return known

    def learn(self, refusal: str) -> bool:
        """Learn from a refused write's text; True when it taught something new, so the same
        points are worth writing again with their values moved."""
        return self.learn_conflicts(conflicts_in(refusal))

    def learn_conflicts(self, conflicts: Iterable[Conflict]) -> bool:
        """Learn conflicts already read (InfluxDB 3 names the field, the line the measurement);
        True when one taught something new."""
        learnt = False
        for conflict in conflicts:
            if self.held(conflict.measurement).get(conflict.field) == conflict.held:
                continue
            known = self._types.setdefault(conflict.measurement, {})
            learnt = True
            self._learnt_at[conflict.measurement] = self._clock()
            known.update(self._query(conflict.measurement))
            # The refusal speaks for the shard that refused: it outranks the schema's list.
            known[conflict.field] = conflict.held
            told = (conflict.measurement, conflict.field)
            log.log(
                logging.INFO if told in self._told else logging.WARNING,
                "InfluxDB holds field %r of measurement %r as %s: values of ours that clash "
                "with a stored type are written to shadow fields (<field>_float, <field>_str)",
                conflict.field,
                conflict.measurement,
                conflict.held,
            )
            self._told.add(told)
        return learnt

    def _query(self, measurement: str) -> dict[str, str]:
        """The schema's types, where the store has a schema query; a field held with several
        types (one per shard) is left to the refusals, which say which one a write meets."""
        if self._schema is None:
            return {}
        try:
            listed = self._schema(measurement)
        except SinkError as exc:
            log.info(
                "could not list the fields of %r (%s): learning from refusals", measurement, exc
            )
            return {}
        return {
            field: next(iter(types))
            for field, types in ((f, set(t)) for f, t in listed.items())
            if len(types) == 1
        }
