"""The asyncio side: keeps HA's WebSocket subscription and hands every event to the broker.

HA client on a sans-I/O protocol, publisher thread and disk spool, backfill, health HTTP server.
"""
