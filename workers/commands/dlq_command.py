"""`ha-ingestor dlq list|replay|purge`: look at dead letters, send them again, or drop them.

Replay sends each letter's message again with `source: "replay"` for the workers (a fixed
schema makes a rejected point writable; a fixed bug makes a broken event readable) and deletes
the letter once it is stored again. With one destination it goes back through the broker. With
several (workers/commands/dlq_places.py), a destination's letters go into that destination's
backlog, so only it writes them, and what no destination could read goes through the broker to
all of them.

`--destination NAME` acts on that destination's letters; without it every destination's letters
are listed (each labelled), replayed or purged.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

import redis
from kombu.exceptions import OperationalError

from config.destinations import DestinationsError, load_destinations
from config.settings import Settings, load_settings
from core import json_codec
from core.ha_event import entity_id_of
from core.rules import RulesError
from workers.commands.dlq_places import EVERY, SHARED_REASONS, Place, pick, places
from workers.stores.dead_letters import DeadLetter, SendMany, replay


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
    for action in (listing, again, purge):
        action.add_argument(
            "--destination",
            metavar="NAME",
            help="only this destination's letters (its name in HA_INGESTOR_CONFIG); without "
            "it, every destination's",
        )


EVERY_WAY = "through the broker, to every destination"


def run(args: argparse.Namespace) -> int:
    if args.action == "replay" and bool(args.all) == bool(args.ids):
        print("dlq replay: give either --all or ids (from `dlq list`)", file=sys.stderr)
        return 2
    settings = load_settings()
    try:
        destinations = load_destinations(settings)
        if args.destination is not None:
            destinations.get(args.destination)
    except DestinationsError as exc:
        print(f"dlq: {exc}; give one of them to --destination", file=sys.stderr)
        return 2
    except RulesError as exc:
        print(f"dlq: {exc}", file=sys.stderr)
        return 2
    client = redis.Redis.from_url(settings.state_redis_url())
    found = places(client, settings.redis_prefix, destinations, settings.dead_letters_max)
    chosen = pick(found, args.destination)
    try:
        if args.action == "list":
            return _list(chosen, args, settings.dead_letters_max)
        if args.action == "replay":
            return _replay(chosen, settings, args)
        return _purge(chosen, args)
    except (redis.RedisError, OperationalError) as exc:
        print(
            f"cannot reach Redis or the broker ({type(exc).__name__}): check REDIS_URL and "
            "CELERY_BROKER_URL, and that they are running",
            file=sys.stderr,
        )
        return 1
    finally:
        client.close()


def _list(chosen: list[Place], args: argparse.Namespace, max_len: int | None) -> int:
    limit = max(0, args.limit)
    labelled = _labelled(chosen, limit, args.reason)
    total = sum(place.count() for place in chosen)
    _warn_full(chosen, max_len)
    waiting = sum(place.store.outage_count() for place in chosen if place.label != EVERY)
    if waiting:
        print(
            f"note: {waiting} events that waited out an InfluxDB outage are in the outage store; "
            "workers write them by themselves once InfluxDB takes writes again.",
            file=sys.stderr,
        )
    if args.json:
        rows = [_as_json(letter, label) for label, letter in labelled]
        print(json_codec.dumps(rows, indent=True).decode())
        return 0
    if not labelled:
        print("no dead letters" + (f" with reason {args.reason}" if args.reason else ""))
        return 0
    several = len(chosen) > 1
    dest = f"{'DESTINATION':<16} " if several else ""
    print(f"{'ID':<17} {dest}{'TIME (UTC)':<19} {'REASON':<22} {'ENTITY':<32} ERROR")
    for label, letter in labelled:
        dest = f"{label[:16]:<16} " if several else ""
        print(
            f"{letter.id:<17} {dest}{_when(letter.at):<19} {letter.reason:<22} "
            f"{_entity(letter.message)[:32]:<32} {_one_line(letter.error)[:120]}"
        )
    print(f"{len(labelled)} shown of {total} dead letters")
    if any(label == EVERY for label, _ in labelled):
        print(f"{EVERY}: no destination could read these; a replay sends them to every one")
    return 0


def _labelled(chosen: list[Place], limit: int, reason: str | None) -> list[tuple[str, DeadLetter]]:
    """The oldest `limit` letters of the places, each with its place's label, oldest first."""
    found: list[tuple[str, DeadLetter]] = []
    for place in chosen:
        taken = 0
        for page in place.letters(reason):
            found += [(place.label, letter) for letter in page[: limit - taken]]
            taken += len(page)
            if taken >= limit:
                break
    found.sort(key=lambda pair: _stream_order(pair[1].id))
    return found[:limit]


def _warn_full(chosen: list[Place], max_len: int | None) -> None:
    if max_len is None:
        return
    for place in chosen:
        total = place.store.count()
        if total >= 0.8 * max_len:
            whose = "" if len(chosen) == 1 else f" (store of {place.label})"
            print(
                f"warning: {total} dead letters{whose}, the most kept is {max_len} "
                "(DEAD_LETTERS_MAX); the oldest are deleted beyond that. Fix the cause, then "
                "replay or purge them, or unset DEAD_LETTERS_MAX to keep them all.",
                file=sys.stderr,
            )


def _replay(chosen: list[Place], settings: Settings, args: argparse.Namespace) -> int:
    broker = _Broker(settings)
    counts: dict[str, int] = {}
    if args.all:
        for place in chosen:
            until = place.store.last_id()  # letters arriving meanwhile wait for the next replay
            for page in place.letters(args.reason, until=until):
                _replay_letters(place, page, broker, counts)
        _say_replayed(counts)
        return 0
    found = [(place, [x for x in place.store.get(args.ids) if place.holds(x.reason)])
             for place in chosen]  # fmt: skip
    if twice := _ambiguous(found):
        print(twice, file=sys.stderr)
        return 2
    for place, letters in found:
        _replay_letters(place, letters, broker, counts)
    _say_replayed(counts)
    replayed = {x.id for _, letters in found for x in letters}
    if missing := [i for i in args.ids if i not in replayed]:
        print(f"not found (already replayed or purged?): {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


def _ambiguous(found: list[tuple[Place, list[DeadLetter]]]) -> str | None:
    """Each store numbers its letters by time, so two destinations' letters can share an id."""
    where: dict[str, list[str]] = {}
    for place, letters in found:
        for letter in letters:
            where.setdefault(letter.id, []).append(place.label)
    twice = {i: labels for i, labels in where.items() if len(labels) > 1}
    if not twice:
        return None
    each = "; ".join(f"{i} ({', '.join(labels)})" for i, labels in twice.items())
    return (
        f"dlq replay: these ids name letters of several destinations: {each}. Nothing was "
        "replayed: give --destination NAME with the ids (`dlq list` shows each letter's)"
    )


class _Broker:
    """The broker's sender, built on first use: a replay into backlogs needs no Celery."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._send: SendMany | None = None

    def __call__(self) -> SendMany:
        if self._send is None:
            from config.celery_app import create_app
            from workers.consumers.task_sender import TaskSender

            self._send = TaskSender(create_app(self._settings))
        return self._send


def _replay_letters(
    place: Place, letters: list[DeadLetter], broker: _Broker, counts: dict[str, int]
) -> None:
    """A destination's letters into its backlog; those of a reason every destination shares
    (a worker's failure on the whole batch) through the broker, to every destination."""
    every = [x for x in letters if place.backlog is not None and x.reason in SHARED_REASONS]
    shared = {x.id for x in every}
    own = [x for x in letters if x.id not in shared]
    if own:
        where = f"into the backlog of {place.label}" if place.backlog else "through the broker"
        if place.label == EVERY:
            where = EVERY_WAY
        counts[where] = counts.get(where, 0) + replay(place.store, own, place.send(broker))
    if every:
        where = EVERY_WAY
        counts[where] = counts.get(where, 0) + replay(place.store, every, broker())


def _say_replayed(counts: dict[str, int]) -> None:
    print(f"replayed {sum(counts.values())} dead letters")
    if set(counts) - {"through the broker"}:
        for where, n in counts.items():
            print(f"  {n} {where}")
        if any(where.startswith("into") for where in counts):
            print("  (the workers write a backlog to its destination alone, oldest first)")


def _purge(chosen: list[Place], args: argparse.Namespace) -> int:
    counts = {place.label: place.count() for place in chosen}
    count = sum(counts.values())
    if count == 0:
        print("no dead letters")
        return 0
    if not args.yes:
        each = ", ".join(f"{label}: {n}" for label, n in counts.items() if n)
        whose = f" ({each})" if len(chosen) > 1 else ""
        try:
            answer = input(f"delete all {count} dead letters{whose} for good? [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted (answer y, or pass --yes)")
            return 1
    print(f"deleted {sum(place.purge() for place in chosen)} dead letters")
    return 0


def _as_json(letter: DeadLetter, destination: str) -> dict[str, Any]:
    return {
        "id": letter.id,
        "destination": destination,
        "at": letter.at,
        "reason": letter.reason,
        "error": letter.error,
        "message": letter.message,
    }


def _stream_order(letter_id: str) -> tuple[int, int]:
    """A stream id (`1712345678901-3`) as numbers: letters of several stores in time order."""
    millis, _, seq = letter_id.partition("-")
    return int(millis), int(seq or 0)


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _entity(message: Any) -> str:
    event = message.get("event") if isinstance(message, dict) else None
    return entity_id_of(event) or "-"


def _one_line(text: str) -> str:
    return " ".join(text.split())
