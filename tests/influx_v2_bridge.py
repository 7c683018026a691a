"""InfluxDB 1.8's v2 write API in front of the test influxd, which (Debian's 1.6) has none.

InfluxDB 1.8 serves `POST /api/v2/write?org=…&bucket=db[/rp]&precision=…` by rewriting it into
its own `/write?db=…&rp=…&precision=…` and answering with that handler's status and body. This
bridge does the same rewrite and passes the real server's answer back untouched, so the v2 sink
meets the real store's refusals (a field type conflict's text among them), not a fake's.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import urllib3

_http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=5, read=30), retries=False)


class V2Bridge:
    """Serves /api/v2/write on 127.0.0.1:`port`, writing through `influx_url`'s /write."""

    def __init__(self, influx_url: str) -> None:
        target = influx_url.rstrip("/")

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                if parts.path != "/api/v2/write":
                    self._answer(404, b'{"error":"not found"}', {})
                    return
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                database, _, policy = query.get("bucket", "").partition("/")
                precision = query.get("precision", "ns")
                params = {"db": database, "precision": {"us": "u"}.get(precision, precision)}
                if policy:
                    params["rp"] = policy
                length = int(self.headers.get("Content-Length") or 0)
                response = _http.request(
                    "POST", f"{target}/write?{urlencode(params)}", body=self.rfile.read(length)
                )
                self._answer(response.status, response.data, dict(response.headers))

            def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                content_type = headers.get("Content-Type", "application/json")
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> V2Bridge:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
