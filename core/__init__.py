"""The pure core: HA events, task messages, rules, event → point, line protocol, health, rates.

No I/O, no clock, no celery/kombu/redis/websockets/influxdb_client/asyncio/urllib/http: checked
by `make lint` (import-linter); listener/ and workers/ both build on it.
"""
