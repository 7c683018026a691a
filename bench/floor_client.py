"""The floor of the steady-rate figures: the least a client can do with HA's events.

`python -m bench.floor_client HA_URL REDIS_URL QUEUE` (token from HA_TOKEN) connects to the
simulator as the listener does (websockets' asyncio client, auth, `supported_features` with
coalescing, one `subscribe_events`), then, for each frame: orjson parses it, each event is
dumped back with orjson, and once `--batch` events are waiting they go to Redis with one LPUSH
(the benchmark passes the listener's mean batch of the same run, so both make as many round
trips to Redis; events short of a last batch stay unpushed). No envelope, no compression, no
spool, no thread, no timer, no health, no backfill: what is left is the cost of being woken per
frame and per batch, which the listener cannot avoid either. It prints {"subscribed": true}
once events may flow and runs until SIGTERM; the benchmark reads its CPU from /proc, as it
reads the listener's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from typing import Any

import orjson
import redis
import websockets


async def _handshake(ws: Any, token: str) -> None:
    """Auth, coalescing and one subscription, as the listener asks for them."""
    await ws.recv()  # auth_required
    await ws.send(orjson.dumps({"type": "auth", "access_token": token}).decode())
    if orjson.loads(await ws.recv()).get("type") != "auth_ok":
        raise SystemExit("the simulator refused the token: set HA_TOKEN to the bench token")
    commands = (
        {"id": 1, "type": "supported_features", "features": {"coalesce_messages": 1}},
        {"id": 2, "type": "subscribe_events", "event_type": "state_changed"},
    )
    for command in commands:
        await ws.send(orjson.dumps(command).decode())
        reply = orjson.loads(await ws.recv())
        if isinstance(reply, dict) and reply.get("success") is not True:
            raise SystemExit(f"the simulator refused {command['type']}: {reply}")


async def _relay(ha_url: str, client: redis.Redis, queue: str, batch: int) -> None:
    token = os.environ["HA_TOKEN"]
    loads, dumps, lpush = orjson.loads, orjson.dumps, client.lpush
    async with websockets.connect(ha_url, compression=None, ping_interval=None) as ws:
        await _handshake(ws, token)
        sys.stdout.write('{"subscribed": true}\n')
        sys.stdout.flush()
        waiting: list[bytes] = []
        while True:
            data = loads(await ws.recv(decode=False))
            messages = data if isinstance(data, list) else [data]
            waiting += [dumps(m["event"]) for m in messages if m.get("type") == "event"]
            if len(waiting) >= batch:
                lpush(queue, *waiting)
                waiting = []


async def _main(args: argparse.Namespace) -> None:
    client = redis.Redis.from_url(args.redis_url)
    relay = asyncio.create_task(_relay(args.ha_url, client, args.queue, args.batch))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({relay, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    try:
        if relay.done():
            relay.result()  # the connection ended first: say why
        relay.cancel()
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("ha_url")
    parser.add_argument("redis_url")
    parser.add_argument("queue")
    parser.add_argument("--batch", type=int, default=1, help="events per LPUSH")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
