"""`ha-ingestor dlq list|replay|purge`: look at dead letters, send them again, or drop them.

Replay enqueues each letter's message again with `source: "replay"` for the workers (a fixed
schema makes a rejected point writable; a fixed bug makes a broken event readable) and deletes
the letter once the broker has it.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

import redis
from kombu.exceptions import OperationalError

from config.redis_keys import RedisKeys
from config.settings import Settings, load_settings
from core import json_codec
from core.ha_event import entity_id_of
from workers.stores.dead_letters import DeadLetter, DeadLetterStore, replay

REPLAY_CHUNK = 500


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = sub.add_parser("list", help="show dead letters, oldest first")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    listing.add_argument("--reason", help="only this reason, e.g. rejected_by_influxdb")
    listing.add_argument("--json", action="store_true", help="a JSON array, with the messages")
    again = sub.add_parser("replay", help="enqueue dead letters again and delete them")
    again.add_argument("--all", action="store_true", help="every dead letter")
    again.add_argument("ids", nargs="*", default=[], metavar="ID", help="ids from `dlq list`")
    again.add_argument("--reason", help="with --all: only this reason")
    purge = sub.add_parser("purge", help="delete every dead letter")
    purge.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def run(args: argparse.Namespace) -> int:
    if args.action == "replay" and bool(args.all) == bool(args.ids):
        print("dlq replay: give either --all or ids (from `dlq list`)", file=sys.stderr)
        return 2
    settings = load_settings()
    client = redis.Redis.from_url(settings.state_redis_url())
    store = DeadLetterStore(
        client, RedisKeys(settings.redis_prefix), max_len=settings.dead_letters_max
    )
    try:
        if args.action == "list":
            return _list(store, args, settings.dead_letters_max)
        if args.action == "replay":
            return _replay(store, settings, args)
        return _purge(store, args)
    except (redis.RedisError, OperationalError) as exc:
        print(
            f"cannot reach Redis or the broker ({type(exc).__name__}): check REDIS_URL and "
            "CELERY_BROKER_URL, and that they are running",
            file=sys.stderr,
        )
        return 1
    finally:
        client.close()


def _list(store: DeadLetterStore, args: argparse.Namespace, max_len: int | None) -> int:
    letters = store.list(limit=max(0, args.limit), reason=args.reason)
    total = store.count()
    if max_len is not None and total >= 0.8 * max_len:
        print(
            f"warning: {total} dead letters, the most kept is {max_len} (DEAD_LETTERS_MAX); the "
            "oldest are deleted beyond that. Fix the cause, then replay or purge them, or unset "
            "DEAD_LETTERS_MAX to keep them all.",
            file=sys.stderr,
        )
    waiting = store.outage_count()
    if waiting:
        print(
            f"note: {waiting} events that waited out an InfluxDB outage are in the outage store; "
            "workers write them by themselves once InfluxDB takes writes again.",
            file=sys.stderr,
        )
    if args.json:
        print(json_codec.dumps([_as_json(letter) for letter in letters], indent=True).decode())
        return 0
    if not letters:
        print("no dead letters" + (f" with reason {args.reason}" if args.reason else ""))
        return 0
    print(f"{'ID':<17} {'TIME (UTC)':<19} {'REASON':<22} {'ENTITY':<32} ERROR")
    for letter in letters:
        print(
            f"{letter.id:<17} {_when(letter.at):<19} {letter.reason:<22} "
            f"{_entity(letter.message)[:32]:<32} {_one_line(letter.error)[:120]}"
        )
    print(f"{len(letters)} shown of {total} dead letters")
    return 0


def _replay(store: DeadLetterStore, settings: Settings, args: argparse.Namespace) -> int:
    from config.celery_app import create_app  # only here: listing needs no Celery
    from workers.consumers.task_sender import TaskSender

    send_many = TaskSender(create_app(settings))
    if args.all:
        until = store.last_id()  # letters arriving meanwhile wait for the next replay
        replayed = 0
        after: str | None = None
        while until is not None:
            letters = store.list(REPLAY_CHUNK, reason=args.reason, after=after, until=until)
            if not letters:
                break
            replayed += replay(store, letters, send_many)
            after = letters[-1].id
        print(f"replayed {replayed} dead letters")
        return 0
    letters = store.get(args.ids)
    replayed = replay(store, letters, send_many)
    missing = sorted(set(args.ids) - {letter.id for letter in letters})
    print(f"replayed {replayed} dead letters")
    if missing:
        print(f"not found (already replayed or purged?): {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


def _purge(store: DeadLetterStore, args: argparse.Namespace) -> int:
    count = store.count()
    if count == 0:
        print("no dead letters")
        return 0
    if not args.yes:
        try:
            answer = input(f"delete all {count} dead letters for good? [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted (answer y, or pass --yes)")
            return 1
    print(f"deleted {store.purge()} dead letters")
    return 0


def _as_json(letter: DeadLetter) -> dict[str, Any]:
    return {
        "id": letter.id,
        "at": letter.at,
        "reason": letter.reason,
        "error": letter.error,
        "message": letter.message,
    }


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _entity(message: Any) -> str:
    event = message.get("event") if isinstance(message, dict) else None
    return entity_id_of(event) or "-"


def _one_line(text: str) -> str:
    return " ".join(text.split())
