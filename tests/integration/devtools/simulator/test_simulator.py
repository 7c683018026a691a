"""The HA simulator against a real websockets client: protocol, events, fault controls, CLI.

Expected shapes come from the captures of a real HA 2024.3.3 in tests/fixtures/.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError

from devtools.simulator import HA_VERSION, HASimulator, Home
from devtools.simulator.entities import iso_from_us, us_from_datetime

pytestmark = pytest.mark.integration

TOKEN = "simulator-test-token"
REPO = Path(__file__).resolve().parents[4]
FIXTURES = REPO / "tests" / "fixtures"
ISO_US = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")
ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
    """Run one async test body on a fresh loop, bounded so a hang fails instead of stalling.

    Clients opened by the body are aborted at the end: one that stopped reading has paused
    its socket and would never notice the server going away.
    """

    async def bounded() -> T:
        try:
            async with asyncio.timeout(timeout):
                return await coro
        finally:
            while HAClient.opened:
                HAClient.opened.pop().ws.transport.abort()

    return asyncio.run(bounded())


async def until(
    sim: HASimulator, condition: Callable[[HASimulator], bool], within: float = 10.0
) -> None:
    """Await a condition on the simulator's counters, with a deadline."""
    async with asyncio.timeout(within):
        await sim.wait_until(condition)


def fixture_exchanges() -> dict[str, dict[str, Any]]:
    lines = (FIXTURES / "protocol_exchanges.jsonl").read_text("utf-8").splitlines()
    return {item["note"]: item for item in map(json.loads, lines)}


def fixture_events() -> list[dict[str, Any]]:
    lines = (FIXTURES / "sample_events.jsonl").read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines if line]


class HAClient:
    """A minimal HA websocket_api client: ids, coalesced frames, events kept aside."""

    opened: ClassVar[list[HAClient]] = []

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.last_id = 0
        self.pending: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.array_frames = 0
        self.array_sizes: list[int] = []

    @classmethod
    async def open(
        cls, url: str, token: str = TOKEN, *, coalesce: bool = False, deflate: bool = True
    ) -> HAClient:
        ws = await connect(url, max_size=None, compression="deflate" if deflate else None)
        cls.opened.append(client := cls(ws))
        hello = json.loads(await ws.recv())
        assert hello == {"type": "auth_required", "ha_version": HA_VERSION}
        await ws.send(json.dumps({"type": "auth", "access_token": token}))
        assert json.loads(await ws.recv()) == {"type": "auth_ok", "ha_version": HA_VERSION}
        if coalesce:
            reply = await client.command("supported_features", features={"coalesce_messages": 1})
            assert reply["success"] is True
        return client

    async def close(self) -> None:
        await self.ws.close()

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def read(self) -> dict[str, Any]:
        """The next message, whether it came alone or inside a coalesced array."""
        while not self.pending:
            data = json.loads(await self.ws.recv())
            if isinstance(data, list):
                self.array_frames += 1
                self.array_sizes.append(len(data))
                self.pending.extend(data)
            else:
                self.pending.append(data)
        return self.pending.pop(0)

    async def reply_to(self, msg_id: Any) -> dict[str, Any]:
        """Read until the reply with this id; events met on the way are kept in `events`."""
        while True:
            message = await self.read()
            if message.get("type") == "event":
                self.events.append(message)
            elif message.get("id") == msg_id:
                return message
            else:
                raise AssertionError(f"unexpected message {message}")

    async def command(self, type_: str, **fields: Any) -> dict[str, Any]:
        self.last_id += 1
        await self.send({"id": self.last_id, "type": type_, **fields})
        return await self.reply_to(self.last_id)

    async def collect_events(self, count: int) -> list[dict[str, Any]]:
        while len(self.events) < count:
            message = await self.read()
            assert message["type"] == "event", message
            self.events.append(message)
        return self.events[:count]


async def read_until_closed(client: HAClient) -> None:
    while True:
        await client.read()


async def started(*, paused: bool = False, **kwargs: Any) -> HASimulator:
    kwargs.setdefault("token", TOKEN)
    sim = HASimulator(**kwargs)
    if paused:
        sim.pause_events()
    await sim.start()
    return sim


def shape(value: Any) -> Any:
    """The key structure of a JSON value (dict keys, recursively), to compare with fixtures."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items() if key != "attributes"}
    return None


# --- auth ----------------------------------------------------------------------------------


def test_auth_ok_and_the_hello_match_ha() -> None:
    async def body() -> None:
        sim = await started()
        try:
            client = await HAClient.open(sim.url)
            await until(sim, lambda s: s.active_clients == 1)
            assert sim.clients_connected == 1
            assert sim.auth_failures == 0
            await client.close()
        finally:
            await sim.stop()

    run(body())


def test_a_wrong_token_gets_auth_invalid_and_a_close() -> None:
    expected = fixture_exchanges()["wrong token"]["recv"]

    async def body() -> None:
        sim = await started()
        try:
            async with connect(sim.url) as ws:
                await ws.recv()
                await ws.send(json.dumps({"type": "auth", "access_token": "nope"}))
                assert json.loads(await ws.recv()) == expected
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
                assert ws.close_code == 1000
            assert sim.auth_failures == 1
            assert sim.clients_connected == 0
        finally:
            await sim.stop()

    run(body())


def test_a_command_before_auth_is_refused_as_ha_does() -> None:
    async def body() -> None:
        sim = await started()
        try:
            async with connect(sim.url) as ws:
                await ws.recv()
                await ws.send(json.dumps({"id": 1, "type": "ping"}))
                reply = json.loads(await ws.recv())
                assert reply["type"] == "auth_invalid"
                assert reply["message"].startswith("Auth message incorrectly formatted: ")
                assert "extra keys not allowed @ data['id']" in reply["message"]
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
            async with connect(sim.url) as ws:
                await ws.recv()
                await ws.send("not json")
                with pytest.raises(ConnectionClosed):
                    await ws.recv()  # HA just disconnects on invalid JSON
            assert sim.auth_failures == 1
        finally:
            await sim.stop()

    run(body())


def test_only_the_websocket_path_upgrades() -> None:
    async def body() -> None:
        sim = await started()
        try:
            with pytest.raises(Exception, match="404"):
                await connect(f"ws://127.0.0.1:{sim.port}/api/other")
        finally:
            await sim.stop()

    run(body())


# --- commands ------------------------------------------------------------------------------


def test_ping_pong_and_the_id_rules() -> None:
    exchanges = fixture_exchanges()

    async def body() -> None:
        sim = await started(rate=1.0)
        try:
            client = await HAClient.open(sim.url)
            assert await client.command("ping") == {"id": 1, "type": "pong"}
            await client.send({"id": 1, "type": "ping"})
            assert await client.reply_to(1) == exchanges["id reuse"]["recv"]
            await client.send({"id": 10, "type": "no_such_command"})
            assert await client.reply_to(10) == exchanges["unknown command"]["recv"]
            # HA only advances the last id once a handler ran: an unknown command does not.
            await client.send({"id": 10, "type": "ping"})
            assert await client.reply_to(10) == {"id": 10, "type": "pong"}
        finally:
            await sim.stop()

    run(body())


def test_badly_formed_commands_get_invalid_format() -> None:
    async def body() -> None:
        sim = await started(rate=1.0)
        try:
            client = await HAClient.open(sim.url)
            cases: list[tuple[dict[str, Any], Any]] = [
                ({"type": "ping"}, None),
                ({"id": "7", "type": "ping"}, "7"),
                ({"id": 0, "type": "ping"}, 0),
                ({"id": True, "type": "ping"}, True),
                ({"id": 5}, 5),
            ]
            for frame, reply_id in cases:
                await client.send(frame)
                reply = await client.reply_to(reply_id)
                assert reply["success"] is False
                assert reply["error"] == {
                    "code": "invalid_format",
                    "message": "Message incorrectly formatted.",
                }
            # A command failing its schema is invalid_format too, and its id is used up.
            await client.send({"id": 3, "type": "unsubscribe_events"})
            reply = await client.reply_to(3)
            assert reply["error"]["code"] == "invalid_format"
            assert "required key not provided @ data['subscription']" in reply["error"]["message"]
            await client.send({"id": 3, "type": "ping"})
            assert (await client.reply_to(3))["error"]["code"] == "id_reuse"
            await client.send({"id": 4, "type": "ping", "extra": 1})
            assert (await client.reply_to(4))["error"]["message"] == (
                "extra keys not allowed @ data['extra']. Got 1"
            )
            # Invalid JSON after auth: HA closes the connection.
            await client.ws.send("{not json")
            with pytest.raises(ConnectionClosed):
                await client.read()
        finally:
            await sim.stop()

    run(body())


def test_get_states_config_and_registries_have_the_fixture_shapes() -> None:
    exchanges = fixture_exchanges()
    fixture_state = exchanges["get_states"]["recv"]["result"][0]
    fixture_config = exchanges["get_config"]["recv"]["result"]
    fixture_area = exchanges["area registry"]["recv"]["result"][0]
    fixture_entity = exchanges["entity registry"]["recv"]["result"][0]

    async def body() -> None:
        # As HA 2024.3.3, whose frames these are: before floors and labels.
        sim = await started(rate=1.0, entities=20, paused=True, floors_and_labels=False)
        try:
            client = await HAClient.open(sim.url)
            states = (await client.command("get_states"))["result"]
            assert {s["entity_id"] for s in states} == set(sim.home.entity_ids)
            assert states == list(sim.home.states.values())
            for state in states:
                assert set(state) == set(fixture_state)
                assert isinstance(state["state"], str)
                assert ISO_US.match(state["last_updated"])
                assert ULID.match(state["context"]["id"])
            names = {s["attributes"].get("friendly_name") for s in states}
            assert {"Température du séjour", "Küche Status"} <= names

            config = (await client.command("get_config"))["result"]
            assert set(config) == set(fixture_config)
            assert "recorder" in config["components"]
            assert config["version"] == HA_VERSION

            areas = (await client.command("config/area_registry/list"))["result"]
            assert [a["name"] for a in areas] == ["Living Room", "Kitchen", "Bedroom"]
            assert all(set(a) == set(fixture_area) for a in areas)
            devices = (await client.command("config/device_registry/list"))["result"]
            entities = (await client.command("config/entity_registry/list"))["result"]
            assert all(set(e) == set(fixture_entity) for e in entities)

            area_ids = {a["area_id"] for a in areas}
            device_ids = {d["id"] for d in devices}
            assert all(d["area_id"] in area_ids | {None} for d in devices)
            assert all(e["device_id"] in device_ids | {None} for e in entities)
            assert all(e["area_id"] in area_ids | {None} for e in entities)
            assert any(d["area_id"] for d in devices)
            assert any(e["area_id"] and e["device_id"] for e in entities)  # an area override
            by_name = {d["name"]: d for d in devices}
            assert by_name["Living Room Lamp"]["area_id"] == "living_room"
        finally:
            await sim.stop()

    run(body())


# --- events --------------------------------------------------------------------------------


def test_subscribers_get_fixture_shaped_events_with_unique_timestamps() -> None:
    sample = fixture_events()[0]
    subscribe = fixture_exchanges()["subscribe_events"]

    async def body() -> tuple[int, list[dict[str, Any]]]:
        sim = await started(rate=500.0, events=300, seed=7, paused=True)
        try:
            client = await HAClient.open(sim.url)
            reply = await client.command("subscribe_events", event_type="state_changed")
            assert {k: v for k, v in reply.items() if k != "id"} == {
                k: v for k, v in subscribe["recv"].items() if k != "id"
            }
            initial = {s["entity_id"]: s for s in sim.home.states.values()}
            sim.resume_events()
            messages = await client.collect_events(300)
            await sim.wait_done()
            assert sim.events_emitted == 300
            # Continuity: each old_state is the previous new_state of that entity.
            for message in messages:
                data = message["event"]["data"]
                assert data["old_state"] == initial[data["entity_id"]]
                initial[data["entity_id"]] = data["new_state"]
            return reply["id"], messages
        finally:
            await sim.stop()

    subscription, messages = run(body())
    assert {m["id"] for m in messages} == {subscription}
    assert list(messages[0]) == list(sample)  # {"type","event","id"} in HA's order
    keys = set()
    for message in messages:
        event = message["event"]
        assert shape(event) == shape(sample["event"])
        new = event["data"]["new_state"]
        assert isinstance(new["state"], str)
        assert event["time_fired"] == new["last_updated"]
        assert event["context"] == new["context"]
        assert ISO_US.match(new["last_updated"])
        assert ISO_US.match(new["last_changed"])
        assert new["last_changed"] <= new["last_updated"]
        assert ULID.match(event["context"]["id"])
        assert event["origin"] == "LOCAL"
        keys.add((new["entity_id"], new["last_updated"]))
    assert len(keys) == len(messages)
    times = [m["event"]["time_fired"] for m in messages]
    assert times == sorted(times)


def test_coalescing_sends_arrays_only_to_clients_that_asked() -> None:
    async def body() -> tuple[HAClient, HAClient]:
        sim = await started(rate=2000.0, events=2000)
        try:
            plain = await HAClient.open(sim.url)
            coalesced = await HAClient.open(sim.url, coalesce=True)
            await plain.command("subscribe_events")
            await coalesced.command("subscribe_events", event_type="state_changed")
            # Several events pending at once go out as one frame to a coalescing client.
            await asyncio.gather(plain.collect_events(500), coalesced.collect_events(500))
            return plain, coalesced
        finally:
            await sim.stop()

    plain, coalesced = run(body())
    assert plain.array_frames == 0
    assert coalesced.array_frames > 0
    assert max(coalesced.array_sizes) > 1
    assert all(m["type"] == "event" for m in coalesced.events)


def test_a_server_built_without_coalescing_never_sends_arrays() -> None:
    async def body() -> HAClient:
        sim = await started(rate=2000.0, coalesce=False)
        try:
            client = await HAClient.open(sim.url, coalesce=True)
            await client.command("subscribe_events")
            await client.collect_events(300)
            return client
        finally:
            await sim.stop()

    assert run(body()).array_frames == 0


def test_unsubscribe_stops_the_events() -> None:
    exchanges = fixture_exchanges()

    async def body() -> None:
        sim = await started(rate=300.0)
        try:
            client = await HAClient.open(sim.url)
            subscription = await client.command("subscribe_events", event_type="state_changed")
            await client.collect_events(5)
            reply = await client.command("unsubscribe_events", subscription=subscription["id"])
            assert {k: v for k, v in reply.items() if k != "id"} == {
                k: v for k, v in exchanges["unsubscribe_events"]["recv"].items() if k != "id"
            }
            await until(sim, lambda s: s.subscriber_count == 0)
            seen = len(client.events)
            emitted = sim.events_emitted
            await until(sim, lambda s: s.events_emitted >= emitted + 30)
            # The pong is queued after anything sent since: no event may come before it.
            assert await client.command("ping") == {"id": client.last_id, "type": "pong"}
            assert len(client.events) == seen
            missing = await client.command("unsubscribe_events", subscription=999)
            assert missing["error"] == {"code": "not_found", "message": "Subscription not found."}
        finally:
            await sim.stop()

    run(body())


def test_other_event_types_get_no_state_changes() -> None:
    async def body() -> None:
        sim = await started(rate=300.0)
        try:
            client = await HAClient.open(sim.url)
            reply = await client.command("subscribe_events", event_type="area_registry_updated")
            assert reply["success"] is True
            assert sim.subscriber_count == 0
            emitted = sim.events_emitted
            await until(sim, lambda s: s.events_emitted >= emitted + 20)
            await client.command("ping")
            assert client.events == []
        finally:
            await sim.stop()

    run(body())


def test_the_record_file_holds_exactly_what_subscribers_received(tmp_path: Path) -> None:
    record = tmp_path / "sent.jsonl"

    async def body() -> list[dict[str, Any]]:
        sim = await started(rate=1000.0, events=400, record_path=record, paused=True)
        try:
            client = await HAClient.open(sim.url, coalesce=True)
            await client.command("subscribe_events")
            sim.resume_events()
            messages = await client.collect_events(400)
            await sim.wait_done()
            return [m["event"] for m in messages]
        finally:
            await sim.stop()

    received = run(body())
    lines = record.read_text("utf-8").splitlines()
    assert [json.loads(line) for line in lines] == received
    assert "°C" in record.read_text("utf-8")  # UTF-8, as HA writes it


def test_pause_and_resume() -> None:
    async def body() -> None:
        sim = await started(rate=500.0)
        try:
            await until(sim, lambda s: s.events_emitted >= 10)
            sim.pause_events()
            await asyncio.sleep(0.05)  # let a chunk in flight finish
            paused_at = sim.events_emitted
            await asyncio.sleep(0.3)  # absence of events can only be shown by waiting
            assert sim.events_emitted == paused_at
            sim.resume_events()
            await until(sim, lambda s: s.events_emitted >= paused_at + 10)
        finally:
            await sim.stop()

    run(body())


def test_the_rate_is_roughly_honoured() -> None:
    async def body() -> float:
        sim = await started(rate=400.0, events=400)
        loop = asyncio.get_running_loop()
        begin = loop.time()
        try:
            await sim.wait_done()
            return loop.time() - begin
        finally:
            await sim.stop()

    elapsed = run(body(), timeout=30.0)
    assert 0.5 <= elapsed <= 20.0  # nominal 1 s


def test_ten_thousand_events_per_second_are_reachable() -> None:
    async def body() -> tuple[float, int]:
        sim = await started(rate=10_000.0, events=20_000, entities=50, paused=True)
        try:
            client = await HAClient.open(sim.url, coalesce=True)
            await client.command("subscribe_events")
            loop = asyncio.get_running_loop()
            begin = loop.time()
            sim.resume_events()
            messages = await client.collect_events(20_000)
            await sim.wait_done()
            keys = {
                (m["event"]["data"]["entity_id"], m["event"]["data"]["new_state"]["last_updated"])
                for m in messages
            }
            return loop.time() - begin, len(keys)
        finally:
            await sim.stop()

    elapsed, unique = run(body(), timeout=90.0)
    assert unique == 20_000
    assert elapsed < 30.0  # nominal 2 s; the client shares this process's CPU


# --- fault controls ------------------------------------------------------------------------


def test_silent_mode_swallows_pings_but_keeps_the_socket() -> None:
    async def body() -> None:
        sim = await started(rate=1.0)
        try:
            client = await HAClient.open(sim.url)
            sim.set_answer_pings(False)
            await client.send({"id": 1, "type": "ping"})
            client.last_id = 1
            config = await client.command("get_config")  # answered; the pong never comes
            assert config["id"] == 2
            assert config["success"] is True
            sim.set_answer_pings(True)
            assert await client.command("ping") == {"id": 3, "type": "pong"}
        finally:
            await sim.stop()

    run(body())


def test_drop_clients_closes_with_1006_and_clients_can_come_back() -> None:
    async def body() -> None:
        sim = await started(rate=50.0)
        try:
            client = await HAClient.open(sim.url)
            await client.command("subscribe_events")
            await sim.drop_clients()
            with pytest.raises(ConnectionClosedError) as closed:
                await read_until_closed(client)
            assert closed.value.rcvd is None  # no close frame
            assert client.ws.close_code == 1006
            assert sim.active_clients == 0
            again = await HAClient.open(sim.url)
            assert await again.command("ping") == {"id": 1, "type": "pong"}
            assert sim.clients_connected == 2
        finally:
            await sim.stop()

    run(body())


def test_a_restart_keeps_the_port_and_the_home() -> None:
    async def body() -> None:
        sim = await started(rate=200.0)
        try:
            client = await HAClient.open(sim.url)
            await sim.stop()
            with pytest.raises(ConnectionClosedError):
                await read_until_closed(client)
            assert client.ws.close_code == 1006
            port, last = sim.port, sim.home.last_timestamp_us
            await sim.start()
            assert sim.port == port
            await until(sim, lambda s: s.home.last_timestamp_us > last)
            again = await HAClient.open(sim.url)
            assert (await again.command("ping"))["type"] == "pong"
        finally:
            await sim.stop()

    run(body())


def test_a_client_that_stops_reading_is_cut_off() -> None:
    async def body() -> None:
        sim = await started(
            rate=1000.0, max_pending=256, pending_peak=64, pending_peak_time=0.5, paused=True
        )
        try:
            # Uncompressed, and every event 8 times: the socket buffers fill within a second.
            client = await HAClient.open(sim.url, deflate=False)
            for _ in range(8):
                await client.command("subscribe_events")
            sim.resume_events()
            # Never read again: the socket buffers fill, then the server's queue does.
            await until(sim, lambda s: s.clients_cut == 1, within=30.0)
            assert sim.active_clients == 0
        finally:
            await sim.stop()

    run(body(), timeout=60.0)


# --- history -------------------------------------------------------------------------------


def test_history_during_period_has_the_compressed_format() -> None:
    exchanges = fixture_exchanges()
    full_sample = exchanges["history during period (full)"]["recv"]["result"]["sensor.load_1"]

    async def body() -> None:
        sim = await started(rate=1000.0, events=600)
        try:
            await sim.wait_done()
            home = sim.home
            entity_id = "sensor.temperature_du_sejour"
            rows = list(home.history(entity_id))
            start = rows[len(rows) // 2]
            start_iso = iso_from_us(start.last_updated_us - 1)
            client = await HAClient.open(sim.url)
            full = await client.command(
                "history/history_during_period",
                start_time=start_iso,
                entity_ids=[entity_id],
                significant_changes_only=False,
            )
            result = full["result"][entity_id]
            assert set(result[0]) == set(full_sample[0])
            assert result[0]["lu"] == (start.last_updated_us - 1) / 1e6  # state at start
            assert [r["s"] for r in result[1:]] == [r.state for r in rows[len(rows) // 2 :]]
            lus = [r["lu"] for r in result]
            assert lus == sorted(lus)
            minimal = await client.command(
                "history/history_during_period",
                start_time=start_iso,
                entity_ids=[entity_id, "sensor.power_usage"],
                minimal_response=True,
                no_attributes=True,
            )
            for series in minimal["result"].values():
                assert all(set(r) == {"s", "lu"} for r in series)
            bad = await client.command("history/history_during_period", start_time="yesterday")
            assert bad["error"] == {"code": "invalid_start_time", "message": "Invalid start_time"}
            future = await client.command(
                "history/history_during_period", start_time="2999-01-01T00:00:00+00:00"
            )
            assert future["result"] == {}
        finally:
            await sim.stop()

    run(body())


# --- the home model (pure) -----------------------------------------------------------------


def test_the_home_is_deterministic_for_a_seed() -> None:
    def draw(seed: int) -> list[str]:
        home = Home(20, seed=seed, now_us=1_795_734_004_000_000)
        return [home.step(1_795_734_005_000_000 + i * 37).json for i in range(500)]

    assert draw(3) == draw(3)
    assert draw(3) != draw(4)


def test_timestamps_stay_unique_when_the_clock_stands_still() -> None:
    home = Home(5, seed=1, now_us=1_795_734_004_000_000)
    changes = [home.step(1_795_734_004_000_000) for _ in range(10_000)]
    stamps = [c.event["data"]["new_state"]["last_updated"] for c in changes]
    assert len(set(stamps)) == len(stamps)
    assert all(json.loads(c.json) == c.event for c in changes[:500])


def test_a_chosen_state_is_an_event_like_any_other_and_the_new_current_state() -> None:
    home = Home(5, seed=1, now_us=1_795_734_004_000_000)
    before = home.states["binary_sensor.front_door"]
    change = home.set_state("binary_sensor.front_door", "unavailable", 1_795_734_005_000_000)
    new = change.event["data"]["new_state"]
    assert json.loads(change.json) == change.event
    assert change.event["data"]["old_state"] == before
    assert new["state"] == "unavailable"
    assert new["attributes"] == before["attributes"]
    assert new["last_updated"] == new["last_changed"] == iso_from_us(1_795_734_005_000_000)
    assert home.states["binary_sensor.front_door"] == new


def test_the_home_has_every_kind_of_entity_and_realistic_changes() -> None:
    home = Home(20, seed=2, now_us=1_795_734_004_000_000)
    domains = {entity_id.split(".")[0] for entity_id in home.entity_ids}
    assert domains >= {
        "sensor",
        "binary_sensor",
        "light",
        "switch",
        "climate",
        "counter",
        "input_number",
        "person",
        "device_tracker",
        "sun",
    }
    units = {s["attributes"].get("unit_of_measurement") for s in home.states.values()}
    assert {"°C", "%", "W", "kWh"} <= units
    changes = [home.step(1_795_734_005_000_000 + i) for i in range(20_000)]
    news = [c.event["data"]["new_state"] for c in changes]
    assert any(s["last_changed"] < s["last_updated"] for s in news)  # attribute-only changes
    went_away = {s["entity_id"] for s in news if s["state"] == "unavailable"}
    assert went_away
    came_back = {
        c.event["data"]["entity_id"]
        for c in changes
        if c.event["data"]["old_state"]["state"] == "unavailable"
        and c.event["data"]["new_state"]["state"] != "unavailable"
    }
    assert came_back
    lights_on = [s for s in news if s["entity_id"] == "light.living_room" and s["state"] == "on"]
    assert isinstance(lights_on[0]["attributes"]["rgb_color"], list)
    text_states = {s["state"] for s in news if s["entity_id"] == "sensor.kuche_status"}
    assert any(not t.isascii() for t in text_states)
    for change in changes[:2000]:
        old, new = change.event["data"]["old_state"], change.event["data"]["new_state"]
        assert (old["state"], old["attributes"]) != (new["state"], new["attributes"])


def test_many_entities_extend_the_catalogue() -> None:
    home = Home(200, seed=0, now_us=1_795_734_004_000_000)
    assert len(set(home.entity_ids)) == 200
    registry_ids = {e["entity_id"] for e in home.entity_registry()}
    assert registry_ids <= set(home.entity_ids)
    assert "sensor.kuche_status" not in registry_ids  # a YAML entity without unique_id
    assert len({e["unique_id"] for e in home.entity_registry()}) == len(registry_ids)


def test_iso_timestamps_round_trip() -> None:
    for stamp in (0, 1_795_734_004_270_193, 1_795_734_004_000_000):
        text = iso_from_us(stamp)
        assert ISO_US.match(text)
        assert us_from_datetime(datetime.fromisoformat(text)) == stamp


# --- the command line ----------------------------------------------------------------------


async def _start_cli(*args: str, env: dict[str, str]) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "devtools.simulator",
        *args,
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    async with asyncio.timeout(20):
        while True:
            line = (await proc.stderr.readline()).decode()
            assert line, "the simulator exited before listening"
            if match := re.search(r"listening on (ws://\S+)", line):
                return proc, match.group(1)


def _cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HA_")}
    env["HA_TOKEN"] = TOKEN
    return env


def test_the_cli_serves_until_sigterm() -> None:
    async def body() -> int:
        proc, url = await _start_cli(
            "--port", "0", "--rate", "50", "--entities", "8", env=_cli_env()
        )
        try:
            client = await HAClient.open(url)
            states = (await client.command("get_states"))["result"]
            assert len(states) == 8
            await client.close()
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(20):
                return await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    assert run(body()) == 0


def test_the_cli_can_exit_after_the_last_event(tmp_path: Path) -> None:
    record = tmp_path / "sent.jsonl"

    async def body() -> int:
        proc, _ = await _start_cli(
            "--port",
            "0",
            "--rate",
            "500",
            "--events",
            "50",
            "--record",
            str(record),
            "--exit-when-done",
            env=_cli_env(),
        )
        try:
            async with asyncio.timeout(30):
                return await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    assert run(body()) == 0
    assert len(record.read_text("utf-8").splitlines()) == 50


def test_the_cli_needs_a_token() -> None:
    async def body() -> tuple[int, bytes]:
        env = _cli_env()
        del env["HA_TOKEN"]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "devtools.simulator",
            "--port",
            "0",
            cwd=REPO,
            env=env,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        assert proc.returncode is not None
        return proc.returncode, err

    code, err = run(body())
    assert code == 2
    assert b"HA_TOKEN" in err
