"""Reading the rename points back (core/renames.py), for `ha-ingestor renames`.

InfluxQL through 1.x's `/query`; Flux through the v2 query API (influxdb-client); SQL through
InfluxDB 3's `/api/v3/query_sql`. A server that cannot be read raises SinkUnavailable with its
text (secrets scrubbed), as a failed write does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import urllib3
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.rest import ApiException

from config.redaction import redact_url, scrub
from core import json_codec
from core.renames import REGISTRY_ID_TAG, RENAMES_MEASUREMENT
from workers.sinks.errors import SinkUnavailable
from workers.sinks.influx_http import clip, json_object, split_credentials

if TYPE_CHECKING:
    from config.destinations import Destination

COLUMNS = ("domain", "old_entity_id", "new_entity_id", REGISTRY_ID_TAG, "found_by")
"""The tags and fields of a rename point, in the order a listing shows them."""


@dataclass(frozen=True, slots=True)
class RenameRow:
    """One rename point as read back."""

    time: str
    """RFC 3339, UTC."""
    domain: str
    old_entity_id: str
    new_entity_id: str
    registry_id: str
    found_by: str


def influxql_renames(retention_policy: str | None = None) -> str:
    """The InfluxQL that lists every rename, oldest first."""
    source = _quoted(RENAMES_MEASUREMENT)
    if retention_policy:
        source = f"{_quoted(retention_policy)}.{source}"
    return f"SELECT {', '.join(map(_quoted, COLUMNS))} FROM {source} ORDER BY time ASC"


def flux_renames(bucket: str) -> str:
    """The Flux that lists every rename, oldest first, one row per point."""
    return (
        f"from(bucket: {_flux_string(bucket)})\n"
        "  |> range(start: 0)\n"
        f"  |> filter(fn: (r) => r._measurement == {_flux_string(RENAMES_MEASUREMENT)})\n"
        '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n'
        "  |> group()\n"
        '  |> sort(columns: ["_time"])'
    )


def read_renames(destination: Destination) -> list[RenameRow]:
    """Every rename point in the destination's database or bucket, oldest first."""
    secrets = destination.secrets()
    try:
        if destination.kind == "influxdb3":
            return _read_v3(destination)
        if destination.api_version == 2:
            return _read_v2(destination)
        return _read_v1(destination)
    except SinkUnavailable as exc:
        raise SinkUnavailable(scrub(str(exc), secrets)) from None


def _read_v1(d: Destination) -> list[RenameRow]:
    url, url_user, url_password = split_credentials(d.url)
    user = d.username or url_user
    secret = d.password
    password = secret.get_secret_value() if secret else url_password
    headers = urllib3.util.make_headers(basic_auth=f"{user}:{password or ''}") if user else {}
    query = influxql_renames(d.retention_policy)
    timeout = urllib3.Timeout(connect=d.timeout, read=d.timeout)
    try:
        response = urllib3.request(
            "GET",
            f"{url}/query",
            fields={"db": d.database, "q": query},
            headers=headers,
            timeout=timeout,
            retries=False,
        )
    except urllib3.exceptions.HTTPError as exc:
        raise SinkUnavailable(f"cannot reach InfluxDB at {redact_url(url)}: {exc}") from exc
    body = json_object(response.data)
    problem = _v1_error(body) or ("" if response.status < 300 else response.data.decode())
    if problem:
        raise SinkUnavailable(f"InfluxDB at {redact_url(url)} answered {response.status}: "
                              f"{clip(problem)}")  # fmt: skip
    rows: list[RenameRow] = []
    results = body.get("results")
    for result in results if isinstance(results, list) else []:
        for series in result.get("series") or ():
            columns = series.get("columns") or []
            for values in series.get("values") or []:
                rows.append(_row(dict(zip(columns, values, strict=False))))
    return rows


def _read_v2(d: Destination) -> list[RenameRow]:
    token = d.token.get_secret_value() if d.token else ""
    with InfluxDBClient(
        url=d.url,
        token=token,
        org=d.org or "",
        timeout=int(d.timeout * 1000),
        retries=False,
    ) as client:
        try:
            tables = client.query_api().query(flux_renames(d.bucket))
        except ApiException as exc:
            raise SinkUnavailable(
                f"InfluxDB at {redact_url(d.url)} answered {exc.status}: "
                f"{clip(str(exc.body or exc.reason))}"
            ) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise SinkUnavailable(f"cannot reach InfluxDB at {redact_url(d.url)}: {exc}") from exc
    return [_row(record.values) for table in tables for record in table.records]


def _read_v3(d: Destination) -> list[RenameRow]:
    """SELECT * (a rename's tags vary with the rules), oldest first; no table or database yet
    means no rename was written."""
    url = split_credentials(d.url)[0]
    token = d.token.get_secret_value() if d.token else ""
    sql = f"SELECT * FROM {_quoted(RENAMES_MEASUREMENT)} ORDER BY time ASC"
    timeout = urllib3.Timeout(connect=d.timeout, read=d.timeout)
    try:
        response = urllib3.request(
            "GET",
            f"{url}/api/v3/query_sql",
            fields={"db": d.database, "q": sql, "format": "json"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            retries=False,
        )
    except urllib3.exceptions.HTTPError as exc:
        raise SinkUnavailable(f"cannot reach InfluxDB 3 at {redact_url(url)}: {exc}") from exc
    text = str(json_object(response.data).get("error") or response.data.decode("utf-8", "replace"))
    if response.status in (400, 404) and "not found" in text:
        return []
    if response.status >= 300:
        raise SinkUnavailable(
            f"InfluxDB 3 at {redact_url(url)} answered {response.status}: {clip(text)}"
            + ("; check INFLUXDB_TOKEN" if response.status == 401 else "")
        )
    answer = json_codec.loads(response.data) if response.data else []
    return (
        [
            _row({**values, "time": _utc(str(values.get("time", "")))})
            for values in answer
            if isinstance(values, dict)
        ]
        if isinstance(answer, list)
        else []
    )


def _utc(rendered: str) -> str:
    """InfluxDB 3 renders a zone-less UTC time; RenameRow's is RFC 3339."""
    return rendered if not rendered or rendered.endswith(("Z", "+00:00")) else rendered + "Z"


def _row(values: dict[str, Any]) -> RenameRow:
    moment: Any = values.get("time", values.get("_time"))
    time = moment.isoformat() if isinstance(moment, datetime) else str(moment)
    return RenameRow(
        time=time,
        domain=str(values.get("domain") or ""),
        old_entity_id=str(values.get("old_entity_id") or ""),
        new_entity_id=str(values.get("new_entity_id") or ""),
        registry_id=str(values.get(REGISTRY_ID_TAG) or ""),
        found_by=str(values.get("found_by") or ""),
    )


def _v1_error(body: dict[str, object]) -> str:
    """InfluxDB 1.x's error text, whole-request or per statement; "" when there is none."""
    if isinstance(body.get("error"), str):
        return str(body["error"])
    results = body.get("results")
    for result in results if isinstance(results, list) else []:
        if isinstance(result, dict) and isinstance(result.get("error"), str):
            return str(result["error"])
    return ""


def _quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _flux_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
