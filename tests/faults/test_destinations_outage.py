"""Two destinations, one of them down, with real processes: the other keeps its latency, the
down one gets every event once it is back, and nothing is written twice anywhere.

A real simulator at 200 events/s feeds a real listener; two `celery worker` processes fan each
batch out to `default` (an InfluxDB 1.x, from INFLUXDB_*) and `archive` (a VictoriaMetrics this
test owns), named in the rules file's `destinations:` list. The VictoriaMetrics is stopped by
PID for the outage and started again on the same port and data directory. Meanwhile a thread
polls InfluxDB and notes when each point becomes readable, minus the time HA fired its event:
the healthy destination's end-to-end latency. Once VictoriaMetrics answers again, the time
until its backlog is empty and the destination unparked is the drain time.

The normal suite runs a 15 s outage; the 60 s one is marked `slow` (`pytest -m slow`), and
bench's `destinations_outage` scenario reports the same figures.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from config.redis_keys import RedisKeys
from core.transform import Point
from devtools.local_servers import VictoriaMetricsServer
from tests.expectations import SeriesKey, expected_points, recorded_events
from tests.faults.test_worker_faults import Run, assert_exactly_once
from tests.helpers import InfluxDatabase, Victoria, wait_until
from workers.stores.backlog import Backlog

pytestmark = pytest.mark.faults

RATE = 200
ARCHIVE = RedisKeys().for_destination("archive")
P99_TARGET_S = 1.5
DRAIN_TARGET_S = 2.0

ENRICHMENT_LABELS = frozenset({"area", "device"})
SampleKey = tuple[str, frozenset[tuple[str, str]], int]
"""(metric name, labels, time in ms): one VictoriaMetrics sample."""


def rules_file(tmp_path: Path, victoria_url: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "destinations:\n"
        "  - name: default\n"
        "  - name: archive\n"
        "    kind: victoriametrics\n"
        f"    url: {victoria_url}\n",
        "utf-8",
    )
    return path


def victoria_samples(points: dict[SeriesKey, Point]) -> Counter[SampleKey]:
    """The samples VictoriaMetrics must hold for these points (core/victoria_lines.py): each
    number as `{measurement}_{field}`, each text as a label on a sample of 1."""
    samples: Counter[SampleKey] = Counter()
    for point in points.values():
        tags = dict(point.tags)
        ms = point.time_ns // 10**6
        for name, value in point.fields:
            labels = dict(tags)
            if isinstance(value, str):
                if not value:
                    continue
                labels[name + "_text" if name in tags else name] = value
            samples[(f"{point.measurement}_{name}", frozenset(labels.items()), ms)] += 1
    return samples


def samples_in_victoria(victoria: Victoria) -> Counter[SampleKey]:
    """Every sample VictoriaMetrics holds, less the enrichment labels (area, device), which
    the workers add from the registries and the pure core cannot foresee."""
    found: Counter[SampleKey] = Counter()
    for series in victoria.export():
        labels = {k: v for k, v in series["metric"].items() if k not in ENRICHMENT_LABELS}
        name = labels.pop("__name__")
        for ms in series["timestamps"]:
            found[(name, frozenset(labels.items()), int(ms))] += 1
    return found


class LatencyWatch:
    """Notes when each point of the simulator's record becomes readable in InfluxDB, minus its
    event's time (as bench's latency scenario does), from a thread polling every 0.1 s."""

    def __init__(self, record: Path, db: InfluxDatabase) -> None:
        self._record = record
        self._db = db
        self._offset = 0
        self.fired: dict[SeriesKey, int] = {}
        self.seen: dict[SeriesKey, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LatencyWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self._poll()

    def _poll(self) -> None:
        with self._record.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self._offset += end
        if end:
            lines = [line for line in data[:end].decode().splitlines() if line.strip()]
            points = expected_points(json.loads(line) for line in lines)
            self.fired.update({key: point.time_ns for key, point in points.items()})
        unseen = [t for key, t in self.fired.items() if key not in self.seen]
        if not unseen:
            return
        rows = self._db.query(
            f'SELECT "value","state" FROM /.*/ WHERE time >= {min(unseen)} '
            'GROUP BY "domain","entity_id"'
        )
        now = time.time()
        for row in rows:
            key = (row["domain"], row["entity_id"], int(row["time"]))
            if key in self.fired and key not in self.seen:
                self.seen[key] = now - self.fired[key] / 1e9

    def latencies(self, since: float, until: float) -> list[float]:
        """Latencies of the points whose events were fired between the two Unix times."""
        return [
            self.seen[key]
            for key, fired in self.fired.items()
            if since <= fired / 1e9 < until and key in self.seen
        ]

    def fired_between(self, since: float, until: float) -> int:
        return sum(since <= fired / 1e9 < until for fired in self.fired.values())


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(0.99 * len(ordered) + 0.5) - 1))]


@dataclass
class Figures:
    events_sent: int
    points_expected: int
    influx_points: int
    victoria_points: int
    victoria_samples: int
    outage_points: int
    p99_s: float
    backlog_events: int
    drain_s: float


@contextmanager
def victoria_server(tmp_path: Path) -> Iterator[VictoriaMetricsServer]:
    server = VictoriaMetricsServer(tmp_path / "victoria")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def run_outage(tmp_path: Path, redis_url: str, db: InfluxDatabase, outage_s: float) -> Figures:
    """The scenario with an outage of `outage_s`; the assertions are the caller's."""
    with victoria_server(tmp_path) as server:
        victoria = Victoria(server.url)
        run = Run(tmp_path, redis_url, db, RATE, events=int(RATE * (outage_s + 12)), settings={
            "HA_INGESTOR_CONFIG": str(rules_file(tmp_path, server.url)),
            "VICTORIA_TEXT_VALUES_MAX": "1000000",  # every text kept: each is checked
        })  # fmt: skip
        client = redis.Redis.from_url(redis_url)
        backlog = Backlog(client, ARCHIVE)
        try:
            run.start_flowing(workers=2)
            with LatencyWatch(run.record, db) as watch:
                wait_until(lambda: int(client.get(ARCHIVE.counter("written")) or 0)
                           >= len(run.initial) + RATE, 30, 0.2,
                           message="events flowing into VictoriaMetrics")  # fmt: skip
                server.stop()  # by its PID
                down_at = time.time()
                wait_until(backlog.parked, 10, 0.05, message="archive parked")
                time.sleep(outage_s)  # the outage itself: nothing to await
                backlog_events = backlog.events()
                up_at_wall = time.time()
                server.start()  # same port, same data directory
                up_at = time.monotonic()
                wait_until(lambda: not backlog.parked() and backlog.chunks() == 0, 60, 0.01,
                           message="the archive's backlog drained")  # fmt: skip
                drain_s = time.monotonic() - up_at
                # The outage's last points settle their latency before the watch ends.
                wait_until(lambda: watch.fired_between(down_at, up_at_wall) == len(
                    watch.latencies(down_at, up_at_wall)), 30, 0.2,
                    message="every point fired during the outage readable")  # fmt: skip
            latencies = watch.latencies(down_at, up_at_wall)
            expected = run.expected()
            run.wait_all_landed(expected, timeout=120)
            influx_points = assert_exactly_once(db, expected)
            samples = victoria_samples(expected)
            found: Counter[SampleKey] = Counter()

            def victoria_complete() -> bool:
                nonlocal found
                found = samples_in_victoria(victoria)
                return found.keys() >= samples.keys()

            with contextlib.suppress(AssertionError):  # what is missing is asserted below
                wait_until(victoria_complete, 30, 1.0, message="every sample in VictoriaMetrics")
            missing = samples - found
            twice = found - samples
            assert not missing, (
                f"{len(missing)} of {len(samples)} samples missing, e.g. {list(missing)[:3]}"
            )
            assert not twice, f"{len(twice)} samples extra or twice, e.g. {list(twice)[:3]}"
            assert backlog.events() == 0
            return Figures(
                events_sent=len(recorded_events(run.record)),
                points_expected=len(expected),
                influx_points=influx_points,
                victoria_points=len(expected),  # every sample of every point, once
                victoria_samples=sum(found.values()),
                outage_points=len(latencies),
                p99_s=p99(latencies),
                backlog_events=backlog_events,
                drain_s=drain_s,
            )
        except BaseException:
            print(run.logs())
            raise
        finally:
            run.stop()
            client.close()


def assert_outage_figures(figures: Figures, outage_s: float) -> None:
    print(
        f"\nFIGURES two destinations, archive (VictoriaMetrics) down {outage_s:g} s at "
        f"{RATE}/s, 2 workers: events sent {figures.events_sent} (+ snapshot), points expected "
        f"{figures.points_expected}; found in InfluxDB {figures.influx_points}, in "
        f"VictoriaMetrics {figures.victoria_points} ({figures.victoria_samples} samples, each "
        f"once); InfluxDB latency p99 during the outage {figures.p99_s:.3f} s over "
        f"{figures.outage_points} points; archive backlog {figures.backlog_events} events, "
        f"drained {figures.drain_s:.2f} s after VictoriaMetrics came back"
    )
    assert figures.outage_points >= RATE * outage_s * 0.8
    assert figures.backlog_events >= RATE * outage_s * 0.8
    assert figures.p99_s < P99_TARGET_S
    assert figures.drain_s < DRAIN_TARGET_S


def test_one_destination_down_15_s_leaves_the_other_on_time_and_loses_nothing(
    tmp_path: Path, redis_url: str, influx_db: InfluxDatabase
) -> None:
    assert_outage_figures(run_outage(tmp_path, redis_url, influx_db, 15.0), 15.0)


@pytest.mark.slow
def test_one_destination_down_60_s_leaves_the_other_on_time_and_loses_nothing(
    tmp_path: Path, redis_url: str, influx_db: InfluxDatabase
) -> None:
    assert_outage_figures(run_outage(tmp_path, redis_url, influx_db, 60.0), 60.0)
