"""The listener's HTTP face: /health (JSON), /metrics (Prometheus) and / (the status page).

A small threaded stdlib server: it reads in-memory figures and beat's summary from Redis, so it
never touches the event loop. Bound to 127.0.0.1 unless HEALTH_HOST says otherwise.
Status codes of /health: listener/health/view.py; its fields: core/health_report.py. Every metric
is derived from the same /health document at scrape time, so the two never disagree; the
listener's own metrics are named by its figures (core/listener_figures.py), field by field.

Every series carries an `instance` label: the listener's home (HA_INSTANCE or its kept name),
so with Prometheus's `honor_labels: true` each home's series, and each alert on them, are that
home's (without it Prometheus keeps the home as `exported_instance`). Beat's fleet view adds one
series per home (`ha_ingestor_home_*{home=…}`): a home whose listener stopped is still reported
by every other listener, and its alert (`home_silent`) names it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from core import json_codec
from core.health_check import STATUSES
from core.listener_figures import DESCRIBED, counter, gauge
from core.listener_figures import Metric as FigureMetric
from listener.health.status_page import render_status_page

log = logging.getLogger(__name__)

HealthProvider = Callable[[], dict[str, Any]]
PREFIX = "ha_ingestor"


PIPELINE_METRICS: tuple[tuple[str, FigureMetric, str], ...] = (
    ("queue_depth", gauge("queue_depth"), "Messages waiting in the broker"),
    ("in_flight", gauge("queue_in_flight"), "Messages taken by workers, not yet acknowledged"),
    ("workers_alive", gauge("workers_alive"), "Workers taking the ingest queue now"),
    (
        "given_back",
        counter("messages_given_back"),
        "Messages sweeps gave back from workers that stopped renewing their liveness",
    ),
    (
        "type_shadowed",
        counter("points_type_shadowed"),
        "Points written with a value in a shadow field (<field>_float, <field>_str): its own "
        "field holds another type in InfluxDB",
    ),
    (
        "text_left_out",
        counter("texts_left_out"),
        "Text values not written to VictoriaMetrics: over VICTORIA_TEXT_VALUES_MAX per entity "
        "and window, or empty",
    ),
    (
        "outage_letters_stored",
        gauge("outage_letters_stored"),
        "Events kept in the outage store, waiting for InfluxDB",
    ),
    (
        "dropped",
        counter("events_dropped"),
        "Dead letters deleted to keep within DEAD_LETTERS_MAX (none unless it is set)",
    ),
    (
        "computed_at",
        gauge("beat_last_run_timestamp_seconds"),
        "Unix time of beat's last health computation",
    ),
)
"""Beat's pipeline figures on /metrics: (the report's key, the metric, its help)."""

DESTINATION_METRICS: tuple[tuple[str, FigureMetric, str], ...] = (
    ("written", counter("points_written"), "Points written, per destination"),
    ("retried", counter("write_retries"), "Write attempts retried, per destination"),
    ("write_errors", counter("write_errors"), "Write attempts refused, per destination"),
    ("dead_letters", counter("dead_letters"), "Events dead-lettered, per destination"),
    (
        "dead_letters_stored",
        gauge("dead_letters_stored"),
        "Letters in a destination's dead-letter store now",
    ),
    (
        "backlog_events",
        gauge("destination_backlog_events"),
        "Events waiting in a destination's backlog (several destinations, it unavailable)",
    ),
    (
        "parked",
        gauge("destination_parked"),
        "1 while a destination cannot take writes and its batches go to its backlog",
    ),
    (
        "lag_s",
        gauge("destination_lag_seconds"),
        "Age of the oldest event a destination has not written yet",
    ),
)
"""Each destination's figures on /metrics, labelled `destination` (`default` when there is one):
(the key in the report's `destinations` section, the metric, its help)."""


def _metric(metric: FigureMetric, doc: str, value: Any) -> Iterator[Metric]:
    """One metric family for a figure; none while the figure is unknown (null)."""
    if value is None:
        return
    name = f"{PREFIX}_{metric.name}"
    family = CounterMetricFamily if metric.kind == "counter" else GaugeMetricFamily
    if metric.label is None:
        yield family(name, doc, value=float(value))
        return
    labelled = family(name, doc, labels=[metric.label])
    for label, count in sorted(value.items()):
        labelled.add_metric([label], float(count))
    yield labelled


HOME_METRICS: tuple[tuple[str, FigureMetric, str], ...] = (
    ("silent", gauge("home_silent"), "1 while a home's listener is not reporting (beat's view)"),
    ("is_subscribed", gauge("home_subscribed"), "1 while a home is subscribed to its HA's events"),
    ("events_per_second", gauge("home_events_per_second"), "A home's events per second (1 min)"),
    ("lag_s", gauge("home_lag_seconds"), "Seconds since a home's listener last reported"),
    (
        "reconnects_last_hour",
        gauge("home_reconnects_last_hour"),
        "A home's reconnects to its HA in the last hour",
    ),
    (
        "waiting_events",
        gauge("home_waiting_events"),
        "Events a home's listener holds in memory and its spool, not yet in the broker",
    ),
)
"""Each home's figures in beat's fleet view, labelled `home`: (its key in the report's `homes`
section, the metric, its help)."""


def _labelled_gauge(name: str, doc: str, label: str, values: dict[str, Any]) -> Metric:
    family = GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=[label])
    for key, value in values.items():
        family.add_metric([key], float(value))
    return family


class HealthCollector(Collector):
    """Exposes the /health document as Prometheus metrics at scrape time."""

    def __init__(self, health: HealthProvider) -> None:
        self._health = health

    def collect(self) -> Iterator[Metric]:
        h = self._health()
        home = h["listener"].get("instance")
        for family in self._families(h):
            if home is not None:
                family.samples = [
                    sample._replace(labels={**sample.labels, "instance": home})
                    for sample in family.samples
                ]
            yield family

    def _families(self, h: dict[str, Any]) -> Iterator[Metric]:
        yield _labelled_gauge(
            "health_status",
            "1 for the current overall status (healthy, degraded, unhealthy), 0 for the others",
            "status",
            {name: name == h["status"] for name in STATUSES},
        )
        checks = GaugeMetricFamily(
            f"{PREFIX}_health_check",
            "1 for each problem currently reported (code and severity as in /health's checks)",
            labels=["code", "severity"],
        )
        for check in h["checks"]:
            labels = {"code": check["code"], "severity": check["severity"]}
            for label in ("destination", "home"):  # only a problem of one is labelled with it
                if label in check:
                    labels[label] = check[label]
            checks.samples.append(Sample(checks.name, labels, 1.0))
        yield checks
        yield from _metric(
            gauge("uptime_seconds"), "Seconds since the listener started", h["uptime_s"]
        )
        yield from _subscription(h["subscription"])
        yield from _listener_figures(h)
        yield from _pipeline(h["pipeline"])
        yield from _destinations(h)
        yield from _homes(h.get("homes") or {})


def _homes(homes: dict[str, Any]) -> Iterator[Metric]:
    """Each home's figures in beat's fleet view, labelled with its name."""
    return _per_member(HOME_METRICS, homes, "home")


def _subscription(s: dict[str, Any]) -> Iterator[Metric]:
    """What the report derives from the subscription, and beat's event rates."""
    yield from _metric(
        gauge("ha_subscribed"), "1 when subscribed to HA's events", s["is_subscribed"]
    )
    yield from _metric(
        gauge("ha_active_subscriptions"), "Event types subscribed to", s["active_subscriptions"]
    )
    if s["event_rate_per_minute"]:
        yield _labelled_gauge(
            "events_per_minute",
            "Average events per minute over a window (1m, 5m, 15m), computed by beat",
            "window",
            s["event_rate_per_minute"],
        )


def _listener_figures(h: dict[str, Any]) -> Iterator[Metric]:
    """Every figure of the listener that has a metric (core/listener_figures.py), as the report
    shows it: its section and key, its metric's name and kind, its help."""
    for described in DESCRIBED:
        about = described.figure
        if about.metric is not None:
            yield from _metric(about.metric, about.help, h[about.section][described.key])


def _pipeline(p: dict[str, Any]) -> Iterator[Metric]:
    """Beat's pipeline figures, with the oldest waiting age continuous and the consumers'."""
    for key, metric, doc in PIPELINE_METRICS:
        yield from _metric(metric, doc, p.get(key))
    by_consumer = p.get("in_flight_by_consumer")
    if by_consumer is not None:
        yield _labelled_gauge(
            "consumer_in_flight",
            "Messages a worker's bulk consumer has taken, not yet finished",
            "consumer",
            dict(sorted(by_consumer.items())),
        )
    oldest = p["oldest_message_age_s"]
    if oldest is None and p["queue_depth"] == 0 and not p["in_flight"]:
        oldest = 0.0  # nothing waits: the series stays continuous instead of vanishing
    yield from _metric(
        gauge("queue_oldest_message_age_seconds"), "Age of the oldest event not yet written", oldest
    )


def _destinations(h: dict[str, Any]) -> Iterator[Metric]:
    """Each destination's figures, labelled with its name. A report without the section (from
    a beat of before destinations) has the one destination's in its pipeline figures."""
    destinations = h.get("destinations") or {"default": h["pipeline"]}
    return _per_member(DESTINATION_METRICS, destinations, "destination")


def _per_member(
    specs: tuple[tuple[str, FigureMetric, str], ...], members: dict[str, Any], label: str
) -> Iterator[Metric]:
    """One family per figure, a sample per member (destination, home) that has it, labelled
    with the member's name; no family where none has it."""
    for key, metric, doc in specs:
        family = CounterMetricFamily if metric.kind == "counter" else GaugeMetricFamily
        labelled = family(f"{PREFIX}_{metric.name}", doc, labels=[label])
        for member, figures in members.items():
            value = figures.get(key)
            if value is not None:
                labelled.add_metric([member], float(value))
        if labelled.samples:
            yield labelled


class HealthServer:
    """Serves the health endpoints from a daemon thread."""

    def __init__(self, host: str, port: int, health: HealthProvider) -> None:
        registry = CollectorRegistry()
        registry.register(HealthCollector(health))
        handler = _make_handler(health, registry)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _make_handler(
    health: HealthProvider, registry: CollectorRegistry
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "ha-ingestor"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/health":
                body = health()
                code = HTTPStatus.SERVICE_UNAVAILABLE if body["status"] == "unhealthy" else 200
                self._send(code, "application/json", json_codec.dumps(body))
            elif path == "/metrics":
                self._send(200, "text/plain; version=0.0.4", generate_latest(registry))
            elif path == "/":
                page = render_status_page(health()).encode()
                self._send(200, "text/html; charset=utf-8", page)
            else:
                self._send(404, "text/plain", b"not found: try /health, /metrics or /\n")

        def _send(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header(
                "Content-Security-Policy",
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                "connect-src 'self'; img-src data:",
            )
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("health http: " + format, *args)

    return Handler
