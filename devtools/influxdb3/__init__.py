"""A stand-in for an InfluxDB 3 Core server, for tests: no Debian or PyPI package ships one.

It answers as the documented HTTP API does, in memory, on 127.0.0.1. The documented responses
it imitates are kept in tests/fixtures/influxdb3/ (sources in tests/fixtures/README.md), and
its tests replay each documented request against it and compare the answers.

What it imitates:
- `POST /api/v3/write_lp?db=&precision=&accept_partial=&no_sync=`: line protocol with float,
  integer (`i`), unsigned (`u`), string and boolean fields, escapes in names, tags and strings;
  precision auto (guessed from the magnitude), nanosecond, microsecond, millisecond, second.
  The short forms (ns, us, ms, s) are refused with 400, as the docs say the real endpoint
  does for now. A column's type is fixed by its first write; a line of another type is refused
  with the engine's conflict message. accept_partial=true (the default) stores the good lines
  and answers 400 with every refused line; accept_partial=false stores nothing and answers 400
  with the first. A write to a database that does not exist creates it; a bad database name
  is refused with the engine's messages. One row per series and time (a rewrite updates it).
- `GET|POST /api/v3/query_sql` with db, q and format json|jsonl|csv (GET: URL parameters,
  POST: a JSON body), rows rendered as the engine renders them, for ONLY this SQL subset:
  `SELECT *|col[, col...]|count(*) FROM t [WHERE col op literal [AND ...]]
  [ORDER BY col [ASC|DESC]] [LIMIT n]` (devtools/influxdb3/sql.py). Anything else is a 400.
- Auth on every route, /health and /ping included: `Authorization: Bearer <token>` or
  `Token <token>`; none or a wrong one is 401 with no body, an unknown scheme is 400.
  token=None is the real server's `--without-auth`.
- `/health` and `/api/v1/health` answering `OK`; `/ping` answering `version`, `revision`,
  `process_id` with the X-Influxdb-Build and X-Influxdb-Version headers; 404 `not found`.

What it does not imitate:
- Full SQL: functions, aggregates other than count(*), GROUP BY, joins, OR, IN, LIKE, time
  arithmetic such as now() - interval; DataFusion's wording for a bad query, a missing table
  or column (the stand-in answers `{"error": ..., "data": null}` in its own words); the
  pretty and parquet formats; InfluxQL (/api/v3/query_influxql, /query); Arrow Flight.
- The v1/v2 compatibility write endpoints (/write, /api/v2/write) and Basic auth.
- Persistence and its timing: the WAL, its one-second flush and no_sync's effect (every write
  is visible at once), Parquet files, object stores, snapshots, compaction, retention.
- Last-value and distinct-value caches, the processing engine (plugins, triggers), database,
  table and token management, resource tokens and permissions (403), the limits on databases,
  tables and columns (their 422), request size limits, gzip bodies, CORS.
- How the engine renders and cuts a long `original_line`: a parse error gives the raw line, a
  type conflict the raw line with string values unquoted, as the documented example shows.
- Parse-error wording beyond `No fields were provided` (documented); the other messages in
  line_protocol.py follow the engine's parser but were not checked against a real server, and
  whether blank or comment lines count in `line_number` was not checked either.
- Tag/field name clashes and the type of a `time` column written as a field.
"""

from __future__ import annotations

from devtools.influxdb3.server import InfluxDB3Server

__all__ = ["InfluxDB3Server"]
