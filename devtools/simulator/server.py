"""A real WebSocket server speaking Home Assistant's websocket_api, backed by a simulated home.

Tests, benchmarks and `make run` talk to it exactly as they would to HA. Its behaviour follows
HA 2024.3's `components/websocket_api` (`http.py`: the auth phase, invalid JSON closes the
connection, a per-client queue that coalesces pending messages and cuts clients that cannot
keep up; `connection.py`: the id/type envelope, `id_reuse`, `unknown_command`; `auth.py`;
`commands.py`) and the captures in `tests/fixtures/`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from pathlib import Path
from typing import IO, Any, Final

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from devtools.simulator.entities import (
    JSON,
    Area,
    Home,
    LabelHolder,
    StateChange,
    encode_json,
    iso_from_us,
    us_from_datetime,
)
from devtools.simulator.recorder_past import DAY_US, RecorderPast

log = logging.getLogger(__name__)

HA_VERSION: Final = "2024.3.3"
WS_PATH: Final = "/api/websocket"
MATCH_ALL: Final = "*"
STATE_CHANGED: Final = "state_changed"
# HA's limits (websocket_api/const.py and http.py, 2024.3).
MAX_PENDING_MSG: Final = 4096
PENDING_MSG_PEAK: Final = 1024
PENDING_MSG_PEAK_TIME: Final = 5.0
AUTH_TIMEOUT: Final = 10.0
HEARTBEAT: Final = 55.0  # aiohttp's WebSocketResponse(heartbeat=55) in HA
WRITE_LIMIT: Final = 2**20  # HA raises aiohttp's drain limit to 1 MiB after auth
MAX_INCOMING: Final = 2**24

# Emission: at most this much of the rate is generated per wake-up, and a schedule that fell
# further behind than the backlog (process suspended, CPU saturated) forgets the missed slots.
_CHUNK_SECONDS: Final = 0.05
_MAX_BACKLOG_SECONDS: Final = 1.0
_FLUSH_SECONDS: Final = 0.2

_AUTH_REQUIRED: Final = encode_json({"type": "auth_required", "ha_version": HA_VERSION})
_AUTH_OK: Final = encode_json({"type": "auth_ok", "ha_version": HA_VERSION})
_MAX_GOT_LENGTH: Final = 500  # voluptuous truncates the "Got ..." part of its errors here


def result_message(msg_id: Any, result: Any = None) -> str:
    return encode_json({"id": msg_id, "type": "result", "success": True, "result": result})


def error_message(msg_id: Any, code: str, message: str) -> str:
    return encode_json(
        {
            "id": msg_id,
            "type": "result",
            "success": False,
            "error": {"code": code, "message": message},
        }
    )


def _auth_invalid(message: str) -> str:
    return encode_json({"type": "auth_invalid", "message": message})


# --- command validation, worded like voluptuous' humanize_error --------------------------


class _Invalid(Exception):
    """A command failed its schema; the text is what HA's invalid_format error says."""


def _got(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_GOT_LENGTH else text[: _MAX_GOT_LENGTH - 3] + "..."


def _problem(message: str, key: str, value: Any) -> str:
    return f"{message} @ data[{key!r}]. Got {_got(value)}"


def _str(value: Any) -> Any:
    if not isinstance(value, str):
        raise _Invalid("expected str for dictionary value")
    return value


def _bool(value: Any) -> Any:
    if not isinstance(value, bool):
        raise _Invalid("expected bool for dictionary value")
    return value


def _positive_int(value: Any) -> Any:
    """cv.positive_int: coerced to int, at least 0."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise _Invalid("expected int") from None
    if number < 0:
        raise _Invalid("value must be at least 0")
    return number


def _str_list(value: Any) -> Any:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _Invalid("expected a list of str")
    return value


def _features(value: Any) -> Any:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, int) for k, v in value.items()
    ):
        raise _Invalid("expected a dictionary of str to int")
    return value


_NO_DEFAULT: Final = object()


@dataclass(frozen=True)
class _Schema:
    """The fields a command accepts; anything else is refused, as vol.Schema does."""

    required: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)
    optional: Mapping[str, tuple[Callable[[Any], Any], Any]] = field(default_factory=dict)

    def validate(self, message: JSON) -> JSON:
        valid: JSON = {"id": message["id"], "type": message["type"]}
        problems: list[str] = []
        for key, value in message.items():
            if key in ("id", "type"):
                continue
            check = self.required.get(key)
            if check is None and key in self.optional:
                check = self.optional[key][0]
            if check is None:
                problems.append(_problem("extra keys not allowed", key, value))
                continue
            try:
                valid[key] = check(value)
            except _Invalid as exc:
                problems.append(_problem(str(exc), key, value))
        problems.extend(
            _problem("required key not provided", key, None)
            for key in self.required
            if key not in message
        )
        if problems:
            raise _Invalid("\n".join(sorted(problems)))
        for key, (_, default) in self.optional.items():
            if key not in valid and default is not _NO_DEFAULT:
                valid[key] = default
        return valid


def _auth_problem(message: Any) -> str | None:
    """What is wrong with an auth message, by AUTH_MESSAGE_SCHEMA; None when it is well formed."""
    if not isinstance(message, dict):
        return f"expected a dictionary. Got {_got(message)}"
    problems = [
        _problem("extra keys not allowed", key, value)
        for key, value in message.items()
        if key not in ("type", "access_token", "api_password")
    ]
    if "type" not in message:
        problems.append(_problem("required key not provided", "type", None))
    elif message["type"] != "auth":
        problems.append(_problem("not a valid value", "type", message["type"]))
    problems.extend(
        _problem("expected str for dictionary value", key, message[key])
        for key in ("access_token", "api_password")
        if key in message and not isinstance(message[key], str)
    )
    if "access_token" in message and "api_password" in message:
        problems.append("two or more values in the same group of exclusion 'auth' @ data[<auth>]")
    return "\n".join(sorted(problems)) or None


def _statistic_type(value: Any) -> Any:
    if value not in ("mean", "sum"):
        raise _Invalid("value must be one of ['mean', 'sum']")
    return value


def _period(value: Any) -> Any:
    if value not in ("5minute", "hour", "day", "week", "month"):
        raise _Invalid("not a valid value")
    return value


def _features_any(value: Any) -> Any:
    if not isinstance(value, dict):
        raise _Invalid("expected a dictionary")
    return value


def _parse_datetime(text: str) -> int | None:
    """dt_util.parse_datetime + as_utc: epoch µs, naive times taken as UTC; None if unparsable."""
    try:
        return us_from_datetime(datetime.fromisoformat(text))
    except ValueError:
        return None


# --- one client --------------------------------------------------------------------------


class _RawFrame(str):
    """A frame a fault test queued exactly as given: it is never coalesced with others."""

    __slots__ = ()


class _Client:
    """An authenticated connection: HA's ActiveConnection plus its outgoing queue.

    Like HA's WebSocketHandler, messages wait in a deque drained by one writer task; when
    the client asked for coalescing, everything pending goes out as one JSON array frame. A
    client that lets MAX_PENDING_MSG pile up, or stays above PENDING_MSG_PEAK for
    PENDING_MSG_PEAK_TIME seconds, is cut off — what HA does to a listener that stops reading.
    """

    def __init__(
        self,
        ws: ServerConnection,
        *,
        max_pending: int,
        pending_peak: int,
        pending_peak_time: float,
        on_cut: Callable[[], None],
    ) -> None:
        self.ws = ws
        self.last_id = 0
        self.subscriptions: dict[int, str | None] = {}
        self.can_coalesce = False
        self.closing = False
        self._on_cut = on_cut
        self._max_pending = max_pending
        self._pending_peak = pending_peak
        self._pending_peak_time = pending_peak_time
        self._queue: deque[str] = deque()
        self._raw_pending = 0
        self._wakeup = asyncio.Event()
        self.idle = asyncio.Event()  # set while nothing waits to be written
        self.idle.set()
        self._finishing = False
        self._peak_timer: asyncio.TimerHandle | None = None
        self._closer: asyncio.Task[None] | None = None
        self._writer = asyncio.create_task(self._write_loop(), name="ha-simulator-writer")

    def event_subscriptions(self) -> list[int]:
        return [
            sub_id
            for sub_id, event_type in self.subscriptions.items()
            if event_type is None or event_type == STATE_CHANGED
        ]

    def send(self, message: str) -> None:
        """Queue a message (HA's _send_message); never blocks the caller."""
        if self.closing:
            return
        if isinstance(message, _RawFrame):
            self._raw_pending += 1
        queue = self._queue
        before = len(queue)
        if before >= self._max_pending:
            self._cut(f"Reached {self._max_pending} pending messages")
            return
        queue.append(message)
        self._wakeup.set()
        self.idle.clear()
        if before <= self._pending_peak:
            if self._peak_timer is not None:
                self._peak_timer.cancel()
                self._peak_timer = None
            return
        if self._peak_timer is None:
            self._peak_timer = asyncio.get_running_loop().call_later(
                self._pending_peak_time, self._check_peak
            )

    async def finish(self) -> None:
        """Write what is queued (error replies included) before the connection closes."""
        self.closing = True
        self._finishing = True
        self._wakeup.set()
        await asyncio.wait({self._writer})

    def abort(self) -> None:
        self.closing = True
        self._writer.cancel()
        if self._peak_timer is not None:
            self._peak_timer.cancel()
            self._peak_timer = None

    def _check_peak(self) -> None:
        self._peak_timer = None
        if len(self._queue) >= self._pending_peak:
            self._cut(f"Stayed over {self._pending_peak} for {self._pending_peak_time:g} seconds")

    def _cut(self, why: str) -> None:
        log.error("Client unable to keep up with pending messages. %s; disconnecting it", why)
        self._on_cut()
        self.abort()
        self._queue.clear()
        self._raw_pending = 0
        self._closer = asyncio.create_task(self.ws.close(), name="ha-simulator-cut")

    async def _write_loop(self) -> None:
        queue = self._queue
        send = self.ws.send
        try:
            while True:
                if not queue:
                    self.idle.set()
                    if self._finishing:
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                if len(queue) > 1 and self.can_coalesce and not self._raw_pending:
                    frame = "[" + ",".join(queue) + "]"
                    queue.clear()
                elif len(queue) > 1 and self.can_coalesce and not isinstance(queue[0], _RawFrame):
                    batch = []
                    while queue and not isinstance(queue[0], _RawFrame):
                        batch.append(queue.popleft())
                    frame = batch[0] if len(batch) == 1 else "[" + ",".join(batch) + "]"
                else:
                    frame = queue.popleft()
                    if isinstance(frame, _RawFrame):
                        self._raw_pending -= 1
                await send(frame)
        except ConnectionClosed:
            return
        finally:
            self.idle.set()  # nothing more will be written: drain() must not wait for it


# --- the server --------------------------------------------------------------------------


class HASimulator:
    """Home Assistant as far as a websocket_api client can tell, with knobs for fault tests.

    `rate` events/s are spread over time (in chunks when the rate is high), to every
    authenticated `subscribe_events` subscriber of state_changed; with `events` set, emission
    stops after that many and `wait_done()` returns. `record_path` gets every emitted event
    object as a JSON line, to compare what HA sent with what reached InfluxDB.
    `stop()` drops clients the way a restarting HA does (close code 1006) and `start()` may
    be called again: the same port and the same home, whose history carries on.

    Counters: `events_emitted`, `clients_connected` (authenticated connections accepted in
    total), `auth_failures` (auth_invalid answers sent), `clients_cut` (dropped for not
    keeping up with pending messages), `registry_events` (registry-updated events fired by
    `create_area` and `update_entity`, the edits a user makes in HA's settings),
    `history_requests` (history/history_during_period commands received).
    `past_hours`/`past_events` give the recorder a history from before the simulator started
    (a night without a listener); `leave_history_unanswered` makes chosen history requests
    time out. `past_days` (one change per entity every `past_interval` seconds) and
    `statistics_days` give it a computed past before that, with long-term statistics, for
    `ha-ingestor import` (`past`, devtools/simulator/recorder_past.py; `statistics_requests`
    counts the statistics commands); `recorder=False` is an HA without the recorder: history
    and statistics commands answer `unknown_command`. `floors_and_labels=False` is an HA before
    2024.4: the floor and label registry commands answer `unknown_command` and areas carry no
    `floor_id` or `labels`; with them, `create_floor`, `move_area`, `create_label` and
    `set_labels` edit them live, firing the registry-updated events HA fires.
    `location_name` is HA's name of the home (`get_config`; a listener names the home after it)
    and `area_names` renames areas by id (`living_room`, `kitchen`, `bedroom`): two simulators
    are then two homes whose areas differ.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str,
        rate: float = 10.0,
        entities: int = 20,
        events: int | None = None,
        seed: int = 0,
        record_path: Path | None = None,
        coalesce: bool = True,
        max_pending: int = MAX_PENDING_MSG,
        pending_peak: int = PENDING_MSG_PEAK,
        pending_peak_time: float = PENDING_MSG_PEAK_TIME,
        history_size: int | None = None,
        recorder_commit_interval: float = 0.0,
        past_hours: float = 0.0,
        past_events: int = 0,
        past_days: float = 0.0,
        past_interval: float = 300.0,
        statistics_days: float | None = None,
        recorder: bool = True,
        floors_and_labels: bool = True,
        location_name: str = "Simulated Home",
        area_names: Mapping[str, str] | None = None,
    ) -> None:
        if not token:
            raise ValueError("token must not be empty")
        if not 0 < rate < math.inf:
            raise ValueError(f"rate must be a finite number of events/s > 0, got {rate}")
        if events is not None and events < 0:
            raise ValueError(f"events must be >= 0, got {events}")
        self.host = host
        self.port = port
        self._token = token.encode()
        self._rate = float(rate)
        self._events = events
        self._record_path = record_path
        self._coalesce = coalesce
        self._max_pending = max_pending
        self._pending_peak = pending_peak
        self._pending_peak_time = pending_peak_time
        now_us = time.time_ns() // 1000
        self._past_from_us = now_us - int(past_hours * 3_600_000_000)
        self._past_events = past_events
        self._home = Home(
            entities,
            seed=seed,
            now_us=self._past_from_us,
            history_size=history_size or (max(1_000, past_events) if past_events else None),
            floors_and_labels=floors_and_labels,
        )
        past_end_us = self._past_from_us - 1_000_000
        self.past = RecorderPast(
            self._home.states,
            start_us=past_end_us - int(past_days * DAY_US),
            end_us=past_end_us,
            interval_s=past_interval,
            statistics_start_us=past_end_us - int((statistics_days or past_days) * DAY_US),
            seed=seed,
        )
        """The recorder's computed past before the home's first states (`past_days` of
        history and 5-minute statistics, `statistics_days` of hourly ones)."""
        self._recorder = recorder
        self.location_name = location_name
        if area_names:
            self._home.areas = [
                Area(a.area_id, area_names.get(a.area_id, a.name)) for a in self._home.areas
            ]
        self.statistics_requests = 0
        self.events_emitted = 0
        self.clients_connected = 0
        self.auth_failures = 0
        self.clients_cut = 0
        self.registry_events = 0
        self.history_requests = 0
        self._unanswered_history: set[int] = set()
        self._answer_pings = True
        self._refused_event_types: frozenset[str] = frozenset()
        self._accepting = True
        self._commit_interval_us = int(recorder_commit_interval * 1_000_000)
        self._running = asyncio.Event()
        self._running.set()
        self._done = asyncio.Event()
        self._changed = asyncio.Event()
        self._server: Server | None = None
        self._emitter: asyncio.Task[None] | None = None
        self._record: IO[str] | None = None
        self._clients: set[_Client] = set()
        self._sockets: dict[ServerConnection, asyncio.Future[None]] = {}
        self._registries: dict[str, str] = {}
        self._commands: dict[str, tuple[Callable[[_Client, JSON], None], _Schema]] = {
            "ping": (self._ping, _Schema()),
            "supported_features": (
                self._supported_features,
                _Schema(required={"features": _features}),
            ),
            "subscribe_events": (
                self._subscribe_events,
                _Schema(optional={"event_type": (_str, MATCH_ALL)}),
            ),
            "unsubscribe_events": (
                self._unsubscribe_events,
                _Schema(required={"subscription": _positive_int}),
            ),
            "get_states": (self._get_states, _Schema()),
            "get_config": (self._get_config, _Schema()),
            "config/area_registry/list": (self._area_registry, _Schema()),
            "config/device_registry/list": (self._device_registry, _Schema()),
            "config/entity_registry/list": (self._entity_registry, _Schema()),
            "config/floor_registry/list": (self._floor_registry, _Schema()),
            "config/label_registry/list": (self._label_registry, _Schema()),
            "history/history_during_period": (
                self._history_during_period,
                _Schema(
                    required={"start_time": _str},
                    optional={
                        "end_time": (_str, _NO_DEFAULT),
                        "entity_ids": (_str_list, _NO_DEFAULT),
                        "include_start_time_state": (_bool, True),
                        "significant_changes_only": (_bool, True),
                        "minimal_response": (_bool, False),
                        "no_attributes": (_bool, False),
                    },
                ),
            ),
            "recorder/list_statistic_ids": (
                self._list_statistic_ids,
                _Schema(optional={"statistic_type": (_statistic_type, None)}),
            ),
            "recorder/statistics_during_period": (
                self._statistics_during_period,
                _Schema(
                    required={"start_time": _str, "period": _period},
                    optional={
                        "end_time": (_str, _NO_DEFAULT),
                        "statistic_ids": (_str_list, _NO_DEFAULT),
                        "types": (_str_list, _NO_DEFAULT),
                        "units": (_features_any, _NO_DEFAULT),
                    },
                ),
            ),
        }
        if not recorder:  # HA without `recorder:` (and so without history) knows none of them
            for name in list(self._commands):
                if name.startswith(("history/", "recorder/")):
                    del self._commands[name]
        if not floors_and_labels:  # HA before 2024.4 has neither registry
            del self._commands["config/floor_registry/list"]
            del self._commands["config/label_registry/list"]

    # --- lifecycle ---

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}{WS_PATH}"

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def events(self) -> int | None:
        return self._events

    @property
    def home(self) -> Home:
        """The simulated home: current states, history, registries."""
        return self._home

    @property
    def active_clients(self) -> int:
        """Authenticated connections still served (a cut client no longer counts)."""
        return sum(1 for client in self._clients if not client.closing)

    @property
    def subscriber_count(self) -> int:
        """Open connections with at least one subscription receiving state_changed."""
        return sum(
            1 for client in self._clients if not client.closing and client.event_subscriptions()
        )

    async def start(self) -> None:
        """Bind (port 0 picks a free one, kept across restarts) and start emitting."""
        if self._server is not None:
            raise RuntimeError("the simulator is already started")
        self._open_record()
        self._record_the_past()
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._process_request,
            max_size=MAX_INCOMING,
            write_limit=WRITE_LIMIT,
            ping_interval=HEARTBEAT,
            ping_timeout=HEARTBEAT / 2,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        if not self._done.is_set():
            self._emitter = asyncio.create_task(self._emit_loop(), name="ha-simulator-emitter")

    async def stop(self, *, abort_clients: bool = True) -> None:
        """Stop emitting and serving.

        By default connected clients see 1006 with no close frame, as when HA goes down;
        `abort_clients=False` closes them cleanly (1001) after what was already written.
        """
        if self._emitter is not None:
            self._emitter.cancel()
            await asyncio.wait({self._emitter})
            self._emitter = None
        if self._server is not None:
            self._server.close(close_connections=not abort_clients)
            if abort_clients:
                await self.drop_clients()
            await self._server.wait_closed()
            self._server = None
        self._close_record()

    async def drain(self) -> None:
        """Wait until every client's queued messages were handed to its socket."""
        for client in list(self._clients):
            await client.idle.wait()

    async def wait_until(self, predicate: Callable[[HASimulator], bool]) -> None:
        """Return once `predicate(self)` holds, checked after every change of the counters.

        For tests: `async with asyncio.timeout(10): await sim.wait_until(lambda s:
        s.subscriber_count >= 1)` instead of polling with sleeps.
        """
        while not predicate(self):
            await self._changed.wait()

    def _notify(self) -> None:
        """Wake `wait_until` callers: a counter, a client or a subscription changed."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_done(self) -> None:
        """Return once all `events` were emitted (and written to the record file)."""
        if self._events is None:
            raise RuntimeError("wait_done() needs a simulator built with events=N")
        await self._done.wait()

    # --- fault-test controls ---

    def set_accepting(self, accepting: bool) -> None:
        """When False, new connections get HTTP 503 while events go on (HA unreachable)."""
        self._accepting = accepting

    def send_raw(self, frame: str) -> None:
        """Queue a frame exactly as given to every authenticated client (malformed ones too).

        It goes out as a frame of its own, never coalesced with other messages.
        """
        for client in self._clients:
            client.send(_RawFrame(frame))

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if not self._accepting:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "503: Service Unavailable")
        return _only_websocket_path(connection, request)

    def create_area(self, area_id: str, name: str) -> None:
        """A user creates an area: the registry changes and `area_registry_updated` fires."""
        self._home.create_area(area_id, name)
        self._registries.pop("areas", None)
        self._fire("area_registry_updated", {"action": "create", "area_id": area_id})

    def update_entity(self, entity_id: str, *, name: str | None, area_id: str | None) -> None:
        """A user renames an entity (and moves it): `entity_registry_updated` fires."""
        self._home.update_entity(entity_id, name=name, area_id=area_id)
        self._registries.pop("entities", None)
        changes = {"name": None, "area_id": None}
        self._fire(
            "entity_registry_updated",
            {"action": "update", "entity_id": entity_id, "changes": changes},
        )

    def set_state(self, entity_id: str, state: str) -> None:
        """An entity takes a state now, outside the random stream (a test's quiet home)."""
        self._publish([self._home.set_state(entity_id, state, time.time_ns() // 1000)])

    def change_entity(self, entity_id: str) -> None:
        """This entity's state changes now (tests choose which, the emitter draws by weight)."""
        self._publish([self._home.change(entity_id, time.time_ns() // 1000)])

    def rename_entity(self, old: str, new: str) -> None:
        """A user changes an entity's id, as HA does it: the registry entry keeps its `id`,
        `entity_registry_updated` fires with `old_entity_id` (and `changes` holding the old
        values), then the old id's state is removed and the new id's added."""
        removed, added = self._home.rename_entity(old, new, time.time_ns() // 1000)
        self._registries.pop("entities", None)
        self._fire(
            "entity_registry_updated",
            {
                "action": "update",
                "entity_id": new,
                "changes": {"entity_id": old},
                "old_entity_id": old,
            },
        )
        self._publish([removed, added])

    def create_floor(self, floor_id: str, name: str, level: int | None = None) -> None:
        """A user creates a floor: `floor_registry_updated` fires."""
        self._home.create_floor(floor_id, name, level)
        self._registries.pop("floors", None)
        self._fire("floor_registry_updated", {"action": "create", "floor_id": floor_id})

    def move_area(self, area_id: str, floor_id: str | None) -> None:
        """A user puts an area on another floor: `area_registry_updated` fires."""
        self._home.move_area(area_id, floor_id)
        self._registries.pop("areas", None)
        self._fire("area_registry_updated", {"action": "update", "area_id": area_id})

    def create_label(self, label_id: str, name: str, color: str | None = None) -> None:
        """A user creates a label: `label_registry_updated` fires."""
        self._home.create_label(label_id, name, color)
        self._registries.pop("labels", None)
        self._fire("label_registry_updated", {"action": "create", "label_id": label_id})

    def set_labels(self, holder: LabelHolder, item_id: str, label_ids: list[str]) -> None:
        """A user labels an area, a device (by id) or an entity: its registry's event fires,
        with the old labels under `changes` for devices and entities, as HA sends them."""
        old = list(self._home.held_labels.get((holder, item_id), ()))
        self._home.set_labels(holder, item_id, label_ids)
        if holder == "area":
            self._registries.pop("areas", None)
            self._fire("area_registry_updated", {"action": "update", "area_id": item_id})
            return
        name, key = ("devices", "device_id") if holder == "device" else ("entities", "entity_id")
        self._registries.pop(name, None)
        self._fire(
            f"{holder}_registry_updated",
            {"action": "update", key: item_id, "changes": {"labels": old}},
        )

    def _floor_registry(self, client: _Client, msg: JSON) -> None:
        self._send_registry(client, msg["id"], "floors", self._home.floor_registry)

    def _label_registry(self, client: _Client, msg: JSON) -> None:
        self._send_registry(client, msg["id"], "labels", self._home.label_registry)

    def _fire(self, event_type: str, data: JSON) -> None:
        """An event of `event_type` to every subscription to it (or to all events)."""
        now_us = time.time_ns() // 1000
        event = encode_json(
            {
                "event_type": event_type,
                "data": data,
                "origin": "LOCAL",
                "time_fired": iso_from_us(now_us),
                "context": {"id": f"{now_us:026x}", "parent_id": None, "user_id": None},
            }
        )
        self.registry_events += 1
        for client in self._clients:
            if client.closing:
                continue
            for sub_id, subscribed in client.subscriptions.items():
                if subscribed is None or subscribed == event_type:
                    client.send(f'{{"type":"event","event":{event},"id":{sub_id}}}')

    def set_answer_pings(self, answer: bool) -> None:
        """When False, pings get no pong but the connection stays open (a hung HA)."""
        self._answer_pings = answer

    def refuse_subscriptions(self, event_types: frozenset[str]) -> None:
        """Answer `unauthorized` to subscriptions to these types, as HA does for a non-admin
        user's token and a type outside its SUBSCRIBE_ALLOWLIST (state_changed is inside)."""
        self._refused_event_types = event_types

    def pause_events(self) -> None:
        self._running.clear()

    def resume_events(self) -> None:
        self._running.set()

    async def drop_clients(self) -> None:
        """Abort every connection without a close frame (clients see 1006, like HA restarting)."""
        finished = list(self._sockets.values())
        for ws in list(self._sockets):
            ws.transport.abort()
        if finished:
            await asyncio.wait(finished, timeout=5.0)

    # --- connections ---

    async def _handle(self, ws: ServerConnection) -> None:
        finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sockets[ws] = finished
        client: _Client | None = None
        try:
            client = await self._authenticate(ws)
            if client is not None:
                await self._serve_commands(client)
        except ConnectionClosed:
            pass
        finally:
            if client is not None:
                client.abort()
                self._clients.discard(client)
                log.info("client disconnected (%d connected)", len(self._clients))
            del self._sockets[ws]
            finished.set_result(None)
            self._notify()

    async def _authenticate(self, ws: ServerConnection) -> _Client | None:
        """HA's AuthPhase; None means: close the connection (normally, code 1000)."""
        await ws.send(_AUTH_REQUIRED)
        try:
            async with asyncio.timeout(AUTH_TIMEOUT):
                raw = await ws.recv()
        except TimeoutError:
            log.warning(
                "Disconnected: Did not receive auth message within %g seconds", AUTH_TIMEOUT
            )
            return None
        if isinstance(raw, bytes):
            log.warning("Disconnected: Received non-Text message.")
            return None
        try:
            message = json.loads(raw)
        except ValueError:
            log.warning("Disconnected: Received invalid JSON.")
            return None
        problem = _auth_problem(message)
        if problem is not None:
            self.auth_failures += 1
            self._notify()
            log.warning("Disconnected: auth message incorrectly formatted")
            await ws.send(_auth_invalid(f"Auth message incorrectly formatted: {problem}"))
            return None
        token = message.get("access_token")
        if not token or not hmac.compare_digest(token.encode(), self._token):
            self.auth_failures += 1
            self._notify()
            log.warning("Login attempt with invalid authentication")
            await ws.send(_auth_invalid("Invalid access token or password"))
            return None
        await ws.send(_AUTH_OK)
        return _Client(
            ws,
            max_pending=self._max_pending,
            pending_peak=self._pending_peak,
            pending_peak_time=self._pending_peak_time,
            on_cut=self._count_cut,
        )

    def _count_cut(self) -> None:
        self.clients_cut += 1
        self._notify()

    async def _serve_commands(self, client: _Client) -> None:
        self._clients.add(client)
        self.clients_connected += 1
        self._notify()
        log.info("client authenticated (%d connected)", len(self._clients))
        try:
            async for raw in client.ws:
                if isinstance(raw, bytes):
                    continue  # binary frames go to binary handlers in HA; there are none here
                try:
                    data = json.loads(raw)
                except ValueError:
                    log.warning("Disconnected: Received invalid JSON.")
                    break
                messages = data if isinstance(data, list) else [data]
                if not all(isinstance(message, dict) for message in messages):
                    # HA fails on `msg.get` and closes the connection.
                    log.warning("Disconnected: Unexpected error inside websocket API")
                    break
                for message in messages:
                    self._handle_message(client, message)
        finally:
            await client.finish()

    def _handle_message(self, client: _Client, message: JSON) -> None:
        """ActiveConnection.async_handle: envelope, id order, lookup, schema, handler."""
        cur_id = message.get("id")
        type_ = message.get("type")
        if not cur_id or type(cur_id) is not int or not type_ or type(type_) is not str:
            client.send(
                error_message(message.get("id"), "invalid_format", "Message incorrectly formatted.")
            )
            return
        if cur_id <= client.last_id:
            client.send(error_message(cur_id, "id_reuse", "Identifier values have to increase."))
            return
        command = self._commands.get(type_)
        if command is None:
            log.info("Received unknown command: %s", type_)
            client.send(error_message(cur_id, "unknown_command", "Unknown command."))
            return
        handler, schema = command
        try:
            handler(client, schema.validate(message))
        except _Invalid as exc:
            client.send(error_message(cur_id, "invalid_format", str(exc)))
        client.last_id = cur_id

    # --- commands ---

    def _ping(self, client: _Client, msg: JSON) -> None:
        if self._answer_pings:
            client.send(encode_json({"id": msg["id"], "type": "pong"}))

    def _supported_features(self, client: _Client, msg: JSON) -> None:
        client.can_coalesce = self._coalesce and msg["features"].get("coalesce_messages") == 1
        client.send(result_message(msg["id"]))

    def _subscribe_events(self, client: _Client, msg: JSON) -> None:
        event_type = msg["event_type"]
        if event_type in self._refused_event_types:
            client.send(error_message(msg["id"], "unauthorized", "Unauthorized"))
            return
        client.subscriptions[msg["id"]] = None if event_type == MATCH_ALL else event_type
        self._notify()
        log.info("client subscribed to %s (subscription %d)", event_type, msg["id"])
        client.send(result_message(msg["id"]))

    def _unsubscribe_events(self, client: _Client, msg: JSON) -> None:
        subscription = msg["subscription"]
        if subscription not in client.subscriptions:
            client.send(error_message(msg["id"], "not_found", "Subscription not found."))
            return
        del client.subscriptions[subscription]
        self._notify()
        log.info("client unsubscribed (subscription %d)", subscription)
        client.send(result_message(msg["id"]))

    def _get_states(self, client: _Client, msg: JSON) -> None:
        states = ",".join(self._home.states_json.values())
        client.send(f'{{"id":{msg["id"]},"type":"result","success":true,"result":[{states}]}}')

    def _get_config(self, client: _Client, msg: JSON) -> None:
        client.send(result_message(msg["id"], self._config()))

    def _area_registry(self, client: _Client, msg: JSON) -> None:
        self._send_registry(client, msg["id"], "areas", self._home.area_registry)

    def _device_registry(self, client: _Client, msg: JSON) -> None:
        self._send_registry(client, msg["id"], "devices", self._home.device_registry)

    def _entity_registry(self, client: _Client, msg: JSON) -> None:
        self._send_registry(client, msg["id"], "entities", self._home.entity_registry)

    def _send_registry(
        self, client: _Client, msg_id: int, name: str, build: Callable[[], list[JSON]]
    ) -> None:
        if name not in self._registries:
            self._registries[name] = encode_json(build())
        client.send(
            f'{{"id":{msg_id},"type":"result","success":true,"result":{self._registries[name]}}}'
        )

    def leave_history_unanswered(self, request_numbers: set[int]) -> None:
        """The history requests with these numbers (1 = the first ever) get no reply at all.

        What a client sees when HA's recorder is too slow for its reply timeout.
        """
        self._unanswered_history = set(request_numbers)

    def _record_the_past(self) -> None:
        """`past_events` changes spread over the `past_hours` before now, once: what HA's
        recorder holds from a night no listener was running. They go to the record file (HA
        had them) but to no client."""
        count, self._past_events = self._past_events, 0
        if not count:
            return
        first_us = self._past_from_us + 60_000_000
        span_us = time.time_ns() // 1000 - 1_000_000 - first_us
        changes = [self._home.step(first_us + span_us * i // count) for i in range(count)]
        if self._record is not None:
            self._record.write("".join([change.json + "\n" for change in changes]))
            self._record.flush()

    def _history_during_period(self, client: _Client, msg: JSON) -> None:
        self.history_requests += 1
        self._notify()
        if self.history_requests in self._unanswered_history:
            return
        start_us = _parse_datetime(msg["start_time"])
        if start_us is None:
            client.send(error_message(msg["id"], "invalid_start_time", "Invalid start_time"))
            return
        end_us = self._home.last_timestamp_us + 1
        if msg.get("end_time"):
            parsed = _parse_datetime(msg["end_time"])
            if parsed is None:
                client.send(error_message(msg["id"], "invalid_end_time", "Invalid end_time"))
                return
            end_us = parsed
        now_us = time.time_ns() // 1000
        if start_us > now_us:
            client.send(result_message(msg["id"], {}))
            return
        # HA's recorder writes to its database every commit_interval: newer changes are not
        # in the history yet (the reason a listener must ask again after a reconnect).
        end_us = min(end_us, now_us - self._commit_interval_us + 1)
        history = self._home.history_during_period(
            start_us,
            end_us,
            msg.get("entity_ids"),
            include_start_time_state=msg["include_start_time_state"],
            significant_changes_only=msg["significant_changes_only"],
            minimal_response=msg["minimal_response"],
            no_attributes=msg["no_attributes"],
        )
        if start_us < self.past.end_us:  # the computed past comes before the home's rows
            past = self.past.history(start_us, end_us, msg.get("entity_ids"))
            for entity_id, rows in history.items():
                past[entity_id] = past.get(entity_id, []) + rows
            history = past
        client.send(result_message(msg["id"], history))

    def _list_statistic_ids(self, client: _Client, msg: JSON) -> None:
        client.send(result_message(msg["id"], self.past.statistic_ids(msg["statistic_type"])))

    def _statistics_during_period(self, client: _Client, msg: JSON) -> None:
        """Rows of the computed past whose period starts in [start_time, end_time)."""
        self.statistics_requests += 1
        self._notify()
        start_us = _parse_datetime(msg["start_time"])
        end_us = _parse_datetime(msg["end_time"]) if msg.get("end_time") else None
        if start_us is None or (msg.get("end_time") and end_us is None):
            client.send(error_message(msg["id"], "invalid_start_time", "Invalid start_time"))
            return
        result = self.past.statistics(
            msg["period"],
            start_us,
            end_us if end_us is not None else time.time_ns() // 1000,
            msg.get("statistic_ids"),
            msg.get("types"),
        )
        client.send(result_message(msg["id"], result))

    def _config(self) -> JSON:
        domains = {entity_id.split(".", 1)[0] for entity_id in self._home.entity_ids}
        base = {"api", "auth", "config", "frontend", "homeassistant", "http"}
        base |= {"logger", "onboarding", "person", "websocket_api", "zone"}
        if self._recorder:
            base |= {"history", "recorder"}
        return {
            "latitude": 52.37,
            "longitude": 4.89,
            "elevation": 0,
            "unit_system": {
                "length": "km",
                "accumulated_precipitation": "mm",
                "mass": "g",
                "pressure": "Pa",
                "temperature": "°C",
                "volume": "L",
                "wind_speed": "m/s",
            },
            "location_name": self.location_name,
            "time_zone": "UTC",
            "components": sorted(base | domains),
            "config_dir": "/config",
            "whitelist_external_dirs": ["/config/www", "/media"],
            "allowlist_external_dirs": ["/config/www", "/media"],
            "allowlist_external_urls": [],
            "version": HA_VERSION,
            "config_source": "storage",
            "recovery_mode": False,
            "state": "RUNNING",
            "external_url": None,
            "internal_url": f"http://{self.host}:{self.port}",
            "currency": "EUR",
            "country": "NL",
            "language": "en",
            "safe_mode": False,
        }

    # --- emission ---

    async def _emit_loop(self) -> None:
        """Draw events on a monotonic schedule of `rate`/s, in chunks when the rate is high."""
        loop = asyncio.get_running_loop()
        rate = self._rate
        limit = self._events
        chunk = max(1, int(rate * _CHUNK_SECONDS))
        backlog = max(chunk, int(rate * _MAX_BACKLOG_SECONDS))
        step = self._home.step
        anchor = loop.time()
        slot = 0
        last_flush = anchor
        while limit is None or self.events_emitted < limit:
            if not self._running.is_set():
                self._flush_record()
                await self._running.wait()
                anchor, slot = loop.time(), 0
                continue
            now = loop.time()
            due = int((now - anchor) * rate) + 1 - slot
            if due <= 0:
                await asyncio.sleep(anchor + slot / rate - now)
                continue
            if due > backlog:
                slot += due - backlog
                due = backlog
            count = min(due, chunk)
            if limit is not None:
                count = min(count, limit - self.events_emitted)
            # Each event is stamped with its slot's time on the wall clock (never the future).
            wall_us = time.time_ns() // 1000
            changes = [
                step(wall_us - int((now - anchor - index / rate) * 1_000_000))
                for index in range(slot, slot + count)
            ]
            slot += count
            self.events_emitted += count
            self._publish(changes)
            self._notify()
            if now - last_flush >= _FLUSH_SECONDS:
                self._flush_record()
                last_flush = now
            await asyncio.sleep(0)
        self._flush_record()
        self._done.set()
        self._notify()
        log.info("all %d events emitted", self.events_emitted)

    def _publish(self, changes: list[StateChange]) -> None:
        """Serialised once per event; each subscriber gets it wrapped with its subscription id."""
        if self._record is not None:
            self._record.write("".join([change.json + "\n" for change in changes]))
        targets = [
            (client, ids)
            for client in self._clients
            if not client.closing and (ids := client.event_subscriptions())
        ]
        if not targets:
            return
        for change in changes:
            prefix = '{"type":"event","event":' + change.json + ',"id":'
            for client, ids in targets:
                for sub_id in ids:
                    client.send(f"{prefix}{sub_id}}}")

    # --- record file (buffered appends, flushed regularly: a few KB, never a stall) ---

    def _open_record(self) -> None:
        if self._record_path is not None and self._record is None:
            self._record = self._record_path.open("a", encoding="utf-8")

    def _flush_record(self) -> None:
        if self._record is not None:
            self._record.flush()

    def _close_record(self) -> None:
        if self._record is not None:
            self._record.close()
            self._record = None


def _only_websocket_path(connection: ServerConnection, request: Request) -> Response | None:
    """Like HA, only /api/websocket upgrades; any other path is a 404."""
    if request.path.split("?", 1)[0] != WS_PATH:
        return connection.respond(HTTPStatus.NOT_FOUND, "404: Not Found")
    return None
