"""The listener's HTTP face: /health (JSON), /metrics (Prometheus) and / (a status page).

A small threaded stdlib server: it only reads in-memory figures, so it never touches the event
loop. Bound to 127.0.0.1 unless configured otherwise.
"""

from __future__ import annotations

import html
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

from listener.stats import ListenerStats

log = logging.getLogger(__name__)

HealthProvider = Callable[[], dict[str, Any]]


class ListenerCollector(Collector):
    """Exposes ListenerStats as Prometheus metrics at scrape time."""

    def __init__(self, stats: ListenerStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self._stats
        counters = {
            "events_received": ("Events received from Home Assistant", s.events_received),
            "events_enqueued": ("Events published to the broker", s.events_enqueued),
            "events_spooled": ("Events written to the local spool", s.events_spooled),
            "events_drained": ("Events moved from the spool to the broker", s.events_drained),
            "malformed_frames": ("Frames from HA that could not be read", s.malformed_frames),
            "publish_errors": ("Failed publish attempts", s.publish_errors),
            "reconnects": ("Reconnects to Home Assistant", s.reconnects),
        }
        for name, (doc, value) in counters.items():
            yield CounterMetricFamily(f"ha_ingestor_listener_{name}", doc, value=value)
        yield GaugeMetricFamily(
            "ha_ingestor_listener_spool_depth", "Events waiting in the spool", value=s.spool_depth
        )
        yield GaugeMetricFamily(
            "ha_ingestor_listener_memory_queue_depth",
            "Events waiting in memory to be published",
            value=s.memory_queue_depth,
        )
        yield GaugeMetricFamily(
            "ha_ingestor_listener_subscribed",
            "1 when subscribed to Home Assistant",
            value=1.0 if s.connection_state == "subscribed" else 0.0,
        )


class HealthServer:
    """Serves the health endpoints from a daemon thread."""

    def __init__(self, host: str, port: int, stats: ListenerStats, health: HealthProvider) -> None:
        registry = CollectorRegistry()
        registry.register(ListenerCollector(stats))
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
                self._send(200, "text/html; charset=utf-8", _status_page(health()).encode())
            else:
                self._send(404, "text/plain", b"not found: try /health, /metrics or /\n")

        def _send(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("health http: " + format, *args)

    return Handler


def _status_page(health: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(json.dumps(v))}</td></tr>"
        for k, v in health.items()
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>ha-ingestor</title>"
        "<meta http-equiv='refresh' content='5'></head><body>"
        f"<h1>ha-ingestor: <span id='status'>{html.escape(str(health['status']))}</span></h1>"
        f"<table>{rows}</table></body></html>"
    )
