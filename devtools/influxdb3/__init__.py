"""A stand-in for an InfluxDB 3 Core server, for tests: no Debian or PyPI package ships one.

It answers as the documented HTTP API does, in memory, on 127.0.0.1. The documented responses
it imitates are kept in tests/fixtures/influxdb3/ (sources in tests/fixtures/README.md), and
its tests replay each documented request against it and compare the answers.

What it imitates:
- `POST /api/v3/write_lp?db=&precision=&accept_partial=&no_sync=`: line protocol with float,
  integer (`i`), unsigned (`u`), string and boolean fields; precision auto (by magnitude),
  nanosecond, microsecond, millisecond, second, and the short forms ns, us, ms, s. A column's
  type is fixed by its first write; a line of another type is refused with the engine's
  conflict message. accept_partial=true (the default) stores the good lines and answers 400
  with every refused line; accept_partial=false stores nothing and answers 400 with the first.
  Writing to a database that does not exist creates it.
- `GET|POST /api/v3/query_sql` with db, q and format json|jsonl|csv, for ONLY this SQL subset:
  `SELECT *|cols|count(*) FROM t [WHERE col op literal [AND ...]] [ORDER BY col [ASC|DESC]]
  [LIMIT n]` (see devtools/influxdb3/sql.py).
- Auth: `Authorization: Bearer <token>` or `Token <token>`, else 401, on every route including
  /health and /ping; token=None is the real server's `--without-auth`.
- `/health` (and `/api/v1/health`) answering `OK`; `/ping` answering version JSON and headers.

What it does not imitate:
- Full SQL and InfluxQL (/api/v3/query_influxql), DataFusion's error wording for bad queries,
  Arrow Flight, and the real query_sql's exact error bodies (its own are `{"error": ...}`).
- The v1/v2 compatibility write endpoints (/write, /api/v2/write).
- Persistence: the WAL, its flush timing and no_sync's effect (every write is visible at
  once), Parquet files, object stores, compaction, retention.
- Last-value and distinct-value caches, the processing engine (plugins, triggers),
  database/table/token management endpoints, resource tokens and permissions, limits on
  databases, tables, columns and request size, gzip bodies.
- How the engine renders and cuts a long `original_line`: the raw line is given back, with
  string field values unquoted as the documented type-conflict example shows.
- Every parse-error wording beyond the ones in its tests (line_protocol.py lists them).
"""

from __future__ import annotations

from devtools.influxdb3.server import InfluxDB3Server

__all__ = ["InfluxDB3Server"]
