"""A small InfluxQL client: the benchmark reads points back the way a dashboard would."""

from __future__ import annotations

import json
from typing import Any

import urllib3

_http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=5, read=120), retries=False)


class Influx:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def results(self, influxql: str, database: str | None = None) -> list[dict[str, Any]]:
        fields = {"q": influxql, "epoch": "ns"}
        if database:
            fields["db"] = database
        response = _http.request("POST", f"{self.url}/query", fields=fields, encode_multipart=False)
        body = json.loads(response.data or b"{}")
        if response.status != 200 or "error" in body:
            raise RuntimeError(f"InfluxQL {influxql!r} failed ({response.status}): {body}")
        results: list[dict[str, Any]] = body.get("results", [])
        for result in results:
            if "error" in result:
                raise RuntimeError(f"InfluxQL {influxql!r} failed: {result['error']}")
        return results

    def rows(self, influxql: str, database: str) -> list[dict[str, Any]]:
        """One dict per row, with the series' tags (from GROUP BY)."""
        out: list[dict[str, Any]] = []
        for result in self.results(influxql, database):
            for series in result.get("series", []):
                tags = series.get("tags", {})
                columns = series["columns"]
                for values in series.get("values", []):
                    out.append({**tags, **dict(zip(columns, values, strict=True))})
        return out

    def create(self, database: str) -> None:
        self.results(f'CREATE DATABASE "{database}"')

    def field_counts(self, database: str) -> tuple[int, int]:
        """(points with a `value`, points with a `state`): a cheap progress gauge."""
        counts = [0, 0]
        for index, field in enumerate(("value", "state")):
            for result in self.results(f'SELECT COUNT("{field}") FROM /.*/', database):
                for series in result.get("series", []):
                    for values in series.get("values", []):
                        counts[index] += int(values[1] or 0)
        return counts[0], counts[1]

    def series_keys(self, database: str) -> set[tuple[str, str, int]]:
        """(domain, object id, time ns) of every point: what zero loss is checked against."""
        keys: set[tuple[str, str, int]] = set()
        for row in self.rows(
            'SELECT "value","state" FROM /.*/ GROUP BY "domain","entity_id"', database
        ):
            keys.add((row["domain"], row["entity_id"], int(row["time"])))
        return keys
