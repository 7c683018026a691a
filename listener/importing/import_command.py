"""`ha-ingestor import`: import the states and long-term statistics HA already recorded.

Exit codes: 0 everything read was written (or dead-lettered); 1 not finished (HA unreachable,
a request failing after its retries, workers not finishing): run the same command again to
resume; 2 bad input or a request HA refuses; 130 interrupted (Ctrl-C): run it again to resume.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import signal
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

import redis

from config.logging_setup import configure_logging
from config.redaction import scrub
from config.redis_keys import RedisKeys
from config.settings import Settings, get_settings
from core.backoff import exponential_backoff
from core.import_time import BadWhen, import_range
from listener.ha import protocol
from listener.ha.client import HAClient, HAConnection
from listener.health.stats import ListenerStats
from listener.history.gap_filler import BackfillLimits
from listener.importing.broker import ImportBroker
from listener.importing.cursor import CURSOR_PATH, ImportCursor
from listener.importing.importer import (
    HistoryImport,
    ImportIncomplete,
    ImportRefused,
    ImportRequest,
    ImportSummary,
)
from listener.importing.progress import ImportProgress
from listener.importing.run_progress import RunProgress
from listener.state_files import HomeNameFile

EXIT_OK, EXIT_INCOMPLETE, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
CONNECT_ATTEMPTS = 3
"""Failed connections in a row that end the import (HA is not there); a run again resumes."""

log = logging.getLogger("listener.import")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since",
        required=True,
        metavar="WHEN",
        help="from: an ISO date (2024-03-01), date and time (2024-03-01T12:00) or an age "
        "(30d, 12h)",
    )
    parser.add_argument("--until", metavar="WHEN", help="up to (default: now), as --since")
    parser.add_argument(
        "--entities", default="", metavar="ID,…", help="only these entities and statistics"
    )
    parser.add_argument(
        "--entity-globs", default="", metavar="GLOB,…", help="only ids matching these patterns"
    )
    parser.add_argument("--no-states", action="store_true", help="skip the states (history)")
    parser.add_argument(
        "--no-statistics", action="store_true", help="skip the long-term statistics"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="read and count everything, publish nothing"
    )
    parser.add_argument(
        "--restart", action="store_true", help="forget a previous run's cursor and start over"
    )
    parser.add_argument(
        "--window",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="seconds of history per request (default 3600)",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="give up when the workers finish nothing for this long (default 300)",
    )


def _ids(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    configure_logging(settings.log_level, settings.secrets())
    if settings.ha_url is None or not settings.ha_token_value():
        _say(
            "set HA_URL (e.g. http://homeassistant.local:8123) and HA_TOKEN (a long-lived "
            "access token from your HA profile, Security tab)."
        )
        return EXIT_BAD_INPUT
    if args.no_states and args.no_statistics:
        _say("--no-states and --no-statistics leave nothing to import: drop one of them")
        return EXIT_BAD_INPUT
    if args.window < 60:
        _say("--window must be at least 60 seconds")
        return EXIT_BAD_INPUT
    now = datetime.now(UTC)
    try:
        start, end = import_range(args.since, args.until, now)
    except BadWhen as exc:
        _say(str(exc))
        return EXIT_BAD_INPUT
    return asyncio.run(_main(args, settings, start, end))


def _request_key(args: argparse.Namespace) -> str:
    """What makes two invocations the same request (the cursor resumes only for it)."""
    fields = [args.since, args.until, _ids(args.entities), _ids(args.entity_globs),
              args.no_states, args.no_statistics, args.window]  # fmt: skip
    # The standard library's exact text: a run's identity must not change across versions.
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:16]


async def _main(
    args: argparse.Namespace, settings: Settings, start: datetime, end: datetime
) -> int:
    """Import [start, end), or what is left of the same request's last run; the exit code.

    Ctrl-C or SIGTERM cancels it; whatever happened, everything it opened is closed again.
    """
    cursor, request = _cursor_and_request(args, settings, start, end)
    run_id = uuid.uuid4().hex[:12]
    broker = tracker = state = None
    if not args.dry_run:
        broker = ImportBroker(settings)
        state = redis.Redis.from_url(settings.state_redis_url(), socket_timeout=10)
        tracker = RunProgress(state, RedisKeys(settings.redis_prefix), run_id)
    progress = ImportProgress()
    importer = HistoryImport(
        request,
        run_id=run_id,
        cursor=cursor,
        progress=progress,
        limits=BackfillLimits(
            window_s=args.window,
            entities_per_request=settings.backfill_entities_per_request,
            reply_timeout=settings.backfill_reply_timeout,
            retries=settings.backfill_retries,
        ),
        broker=broker,
        tracker=tracker,
        max_queue=settings.import_max_queue,
        wait_s=args.wait,
        backoff=lambda: exponential_backoff(initial=1.0, cap=30.0),
    )
    stats = ListenerStats()
    client = _ha_client(settings, importer, stats)
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, task.cancel)
    try:
        return await _import(client, importer, cursor, stats, settings, dry_run=args.dry_run)
    finally:
        for signum in _STOP_SIGNALS:
            loop.remove_signal_handler(signum)
        progress.close()
        with contextlib.suppress(Exception):
            await client.stop()
        if broker is not None:
            broker.close()
        if state is not None:
            state.close()


def _cursor_and_request(
    args: argparse.Namespace, settings: Settings, start: datetime, end: datetime
) -> tuple[ImportCursor, ImportRequest]:
    """The cursor of this request and what to import: [start, end), or the range the same
    command resolved when it first ran, if it resumes (`--since 30d` is not moved on)."""
    cursor = ImportCursor(settings.data_dir / CURSOR_PATH)
    key = _request_key(args)
    if args.restart:
        cursor.clear()
    if args.dry_run:
        cursor.start, cursor.end = start, end
    elif cursor.resume(key):
        assert cursor.start is not None
        assert cursor.end is not None
        start, end = cursor.start, cursor.end
        log.info("resuming the import of %s..%s where it stopped (--restart starts over)",
                 start.isoformat(), end.isoformat())  # fmt: skip
    else:
        cursor.begin(key, start, end)
    request = ImportRequest(
        start=start,
        end=end,
        entities=_ids(args.entities),
        globs=_ids(args.entity_globs),
        states=not args.no_states,
        statistics=not args.no_statistics,
        dry_run=args.dry_run,
    )
    return cursor, request


def _ha_client(settings: Settings, importer: HistoryImport, stats: ListenerStats) -> HAClient:
    """The listener's HA client, subscribed to nothing: once logged in it runs the import and
    stops. After CONNECT_ATTEMPTS failed connections in a row it stops too (HA is not there)."""
    stopping: set[asyncio.Task[None]] = set()
    failed_before = [0, 0]  # (connects_ok, connects_failed) at the last login

    async def on_connected(connection: HAConnection) -> None:
        importer.instance = await _home(connection, settings)
        await importer.run(connection.call)
        await client.stop()

    def on_disconnected() -> None:
        if stats.connects_ok != failed_before[0]:
            failed_before[:] = [stats.connects_ok, stats.connects_failed]
        if stats.connects_failed - failed_before[1] >= CONNECT_ATTEMPTS:
            stopping.add(asyncio.ensure_future(client.stop()))

    token = settings.ha_token_value()
    assert settings.ha_url is not None
    assert token
    client = HAClient(
        settings.ha_url,
        token,
        (),
        _ignore_event,
        stats,
        on_connected=on_connected,
        on_disconnected=on_disconnected,
        heartbeat_interval=settings.ha_heartbeat_interval,
        heartbeat_timeout=settings.ha_heartbeat_timeout,
        backoff=lambda: exponential_backoff(initial=1.0, cap=10.0),
        max_frame_bytes=settings.ha_max_frame_mb * 1024 * 1024,
    )
    return client


async def _home(connection: HAConnection, settings: Settings) -> str:
    """The home this import is for: HA_INSTANCE, else the name the listener keeps in the same
    DATA_DIR, else made from HA's location name (and kept), as the listener does."""
    try:
        config = await connection.call("get_config")
    except protocol.CommandFailed:
        config = {}
    location = config.get("location_name") if isinstance(config, dict) else None
    home = HomeNameFile(settings.data_dir)
    name = await asyncio.to_thread(home.resolve, settings.ha_instance, location)
    log.info("importing for the home %r", name)
    return name


async def _ignore_event(_: dict[str, Any]) -> None:
    """The import subscribes to no event type: nothing arrives here."""


async def _import(
    client: HAClient,
    importer: HistoryImport,
    cursor: ImportCursor,
    stats: ListenerStats,
    settings: Settings,
    *,
    dry_run: bool,
) -> int:
    """Run the client until the import ends; tell the user how it ended; the exit code."""
    try:
        await client.run()
        return _finished(importer.summary, cursor, stats, dry_run=dry_run)
    except protocol.AuthInvalid as exc:
        _say(
            f"HA rejected the token (auth_invalid: {exc}): create a new long-lived access "
            "token in your HA profile and set HA_TOKEN"
        )
        return EXIT_BAD_INPUT
    except ImportRefused as exc:
        _say(str(exc))
        return EXIT_BAD_INPUT
    except ImportIncomplete as exc:
        _say(str(exc))
    except (redis.RedisError, OSError) as exc:
        _say(
            f"cannot reach the broker or Redis ({type(exc).__name__}: "
            f"{scrub(str(exc), settings.secrets())}): check CELERY_BROKER_URL and REDIS_URL "
            "(`ha-ingestor check`), then run the same command again to resume"
        )
    except asyncio.CancelledError:
        _say(
            "interrupted; the cursor keeps what is finished: run the same command again to "
            "go on (--restart to start over)"
        )
        _print_summary(importer.summary, dry_run=dry_run, partial=True)
        return EXIT_INTERRUPTED
    _print_summary(importer.summary, dry_run=dry_run, partial=True)
    return EXIT_INCOMPLETE


def _finished(
    summary: ImportSummary, cursor: ImportCursor, stats: ListenerStats, *, dry_run: bool
) -> int:
    """After the client stopped: the import is complete, or HA could not be reached."""
    if not summary.complete:
        _say(
            f"cannot reach Home Assistant ({stats.last_error}): check HA_URL and that HA "
            "runs (`ha-ingestor check`)"
        )
        return EXIT_INCOMPLETE
    if not dry_run:
        cursor.clear()
    _print_summary(summary, dry_run=dry_run)
    return EXIT_OK


def _say(text: str) -> None:
    print(f"ha-ingestor import: {text}", file=sys.stderr)


def _print_summary(summary: ImportSummary, *, dry_run: bool, partial: bool = False) -> None:
    if dry_run:
        print(f"dry run: {summary.states} states and {summary.statistics_rows} statistics rows "
              f"to import, read in {summary.seconds:.1f} s; nothing was published")  # fmt: skip
        return
    head = "import so far" if partial else f"import finished in {summary.seconds:.1f} s"
    print(
        f"{head}: {summary.states} states, {summary.statistics_rows} statistics rows "
        f"({summary.published} messages); {summary.written} points written, "
        f"{summary.skipped} skipped by rules, {summary.dead_lettered} dead letters"
    )
