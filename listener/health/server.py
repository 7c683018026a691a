"""The listener's HTTP face: /health (JSON), /metrics (Prometheus) and / (the status page).

A small threaded stdlib server: it reads in-memory figures and beat's summary from Redis, so it
never touches the event loop. Bound to 127.0.0.1 unless HEALTH_HOST says otherwise.
Status codes of /health: listener/health/view.py; its fields: core/health_report.py. Every metric
is derived from the same /health document at scrape time, so the two never disagree.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from core.health_check import STATUSES
from listener.health.status_page import render_status_page

log = logging.getLogger(__name__)

HealthProvider = Callable[[], dict[str, Any]]
PREFIX = "ha_ingestor"


def _counter(name: str, doc: str, value: Any) -> Iterator[Metric]:
    if value is not None:
        yield CounterMetricFamily(f"{PREFIX}_{name}", doc, value=float(value))


def _gauge(name: str, doc: str, value: Any) -> Iterator[Metric]:
    if value is not None:
        yield GaugeMetricFamily(f"{PREFIX}_{name}", doc, value=float(value))


class HealthCollector(Collector):
    """Exposes the /health document as Prometheus metrics at scrape time."""

    def __init__(self, health: HealthProvider) -> None:
        self._health = health

    def collect(self) -> Iterator[Metric]:
        h = self._health()
        status = GaugeMetricFamily(
            f"{PREFIX}_health_status",
            "1 for the current overall status (healthy, degraded, unhealthy), 0 for the others",
            labels=["status"],
        )
        for name in STATUSES:
            status.add_metric([name], 1.0 if h["status"] == name else 0.0)
        yield status
        checks = GaugeMetricFamily(
            f"{PREFIX}_health_check",
            "1 for each problem currently reported (code and severity as in /health's checks)",
            labels=["code", "severity"],
        )
        for check in h["checks"]:
            checks.add_metric([check["code"], check["severity"]], 1.0)
        yield checks
        yield from _gauge("uptime_seconds", "Seconds since the listener started", h["uptime_s"])
        yield from self._connection(h["connection"], h["subscription"])
        yield from self._listener(h["listener"])
        yield from self._pipeline(h["pipeline"])

    def _connection(self, c: dict[str, Any], s: dict[str, Any]) -> Iterator[Metric]:
        yield from _counter("ha_connection_attempts", "Connection attempts to HA", c["attempts"])
        yield from _counter(
            "ha_connections_successful", "Connections to HA that authenticated", c["successful"]
        )
        yield from _counter(
            "ha_connections_failed", "Connection attempts that never authenticated", c["failed"]
        )
        yield from _counter("ha_reconnects", "Reconnects to HA since start", c["reconnects"])
        yield from _gauge("ha_subscribed", "1 when subscribed to HA's events", s["is_subscribed"])
        yield from _gauge(
            "ha_active_subscriptions", "Event types subscribed to", s["active_subscriptions"]
        )
        received = CounterMetricFamily(
            f"{PREFIX}_events_received",
            "Live events received from HA, by event type",
            labels=["event_type"],
        )
        for event_type, count in sorted(s["events_by_type"].items()):
            received.add_metric([event_type], float(count))
        yield received
        yield from _gauge(
            "last_event_timestamp_seconds", "Unix time of the last event", s["last_event_time"]
        )
        per_minute = s["event_rate_per_minute"]
        if per_minute:
            rate = GaugeMetricFamily(
                f"{PREFIX}_events_per_minute",
                "Average events per minute over a window (1m, 5m, 15m), computed by beat",
                labels=["window"],
            )
            for window, value in per_minute.items():
                rate.add_metric([window], float(value))
            yield rate

    def _listener(self, li: dict[str, Any]) -> Iterator[Metric]:
        counters = {
            "events_enqueued": "Events published to the broker",
            "events_spooled": "Events written to the local spool",
            "events_drained": "Events moved from the spool to the broker",
            "publish_errors": "Failed publish attempts",
            "malformed_frames": "Frames from HA that could not be read",
        }
        for name, doc in counters.items():
            yield from _counter(f"listener_{name}", doc, li[name])
        yield from _gauge(
            "listener_spool_depth", "Events waiting in the local spool", li["spool_depth"]
        )
        yield from _gauge(
            "listener_memory_queue_depth",
            "Events waiting in memory to be published",
            li["memory_queue_depth"],
        )
        yield from _gauge("listener_broker_up", "1 when the listener can publish", li["broker_up"])
        yield from _gauge(
            "listener_spool_bytes", "Bytes the spool takes on disk", li["spool_bytes"]
        )
        yield from _gauge(
            "listener_spool_max_bytes",
            "The spool's size limit (SPOOL_MAX_MB)",
            li["spool_max_bytes"],
        )
        yield from _gauge(
            "listener_spool_disk_free_bytes",
            "Free space of the spool's file system",
            li["spool_disk_free_bytes"],
        )
        yield from _gauge(
            "broker_memory_used_bytes",
            "The broker Redis's used_memory, as the listener reads it",
            li["broker_memory_used_bytes"],
        )
        yield from _gauge(
            "broker_memory_max_bytes",
            "The broker Redis's maxmemory (0: no limit)",
            li["broker_memory_max_bytes"],
        )
        yield from _gauge(
            "listener_broker_full",
            "1 while the broker's memory is above BROKER_MEMORY_SPOOL_PERCENT (events spooled)",
            li["broker_full"],
        )

    def _pipeline(self, p: dict[str, Any]) -> Iterator[Metric]:
        yield from _gauge("queue_depth", "Messages waiting in the broker", p["queue_depth"])
        yield from _gauge(
            "queue_in_flight", "Messages taken by workers, not yet acknowledged", p["in_flight"]
        )
        by_consumer = p.get("in_flight_by_consumer")
        if by_consumer is not None:
            per = GaugeMetricFamily(
                f"{PREFIX}_consumer_in_flight",
                "Messages a worker's bulk consumer has taken, not yet finished",
                labels=["consumer"],
            )
            for consumer, count in sorted(by_consumer.items()):
                per.add_metric([consumer], float(count))
            yield per
        yield from _gauge(
            "workers_alive", "Workers taking the ingest queue now", p.get("workers_alive")
        )
        yield from _counter(
            "messages_given_back",
            "Messages sweeps gave back from workers that stopped renewing their liveness",
            p.get("given_back"),
        )
        oldest = p["oldest_message_age_s"]
        if oldest is None and p["queue_depth"] == 0 and not p["in_flight"]:
            oldest = 0.0  # nothing waits: the series stays continuous instead of vanishing
        yield from _gauge(
            "queue_oldest_message_age_seconds", "Age of the oldest event not yet written", oldest
        )
        yield from _counter("points_written", "Points written to InfluxDB", p["written"])
        yield from _counter("write_retries", "InfluxDB write attempts retried", p["retried"])
        yield from _counter("write_errors", "InfluxDB write attempts refused", p["write_errors"])
        yield from _counter("dead_letters", "Events dead-lettered", p["dead_letters"])
        yield from _gauge(
            "dead_letters_stored", "Letters in the dead-letter store now", p["dead_letters_stored"]
        )
        yield from _gauge(
            "outage_letters_stored",
            "Events kept in the outage store, waiting for InfluxDB",
            p["outage_letters_stored"],
        )
        yield from _counter(
            "events_dropped",
            "Dead letters deleted to keep within DEAD_LETTERS_MAX (none unless it is set)",
            p["dropped"],
        )
        yield from _gauge(
            "beat_last_run_timestamp_seconds",
            "Unix time of beat's last health computation",
            p["computed_at"],
        )


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
                self._send(code, "application/json", json.dumps(body).encode())
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
