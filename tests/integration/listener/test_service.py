"""The listener as `build_listener` composes it, run in this process against the HA simulator
and a real Redis: what it opens is closed again, when it stops and when it cannot be built."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from config.redis_keys import RedisKeys
from config.settings import Settings, SettingsError, load_settings
from devtools.local_servers import free_port
from listener.data_dir_lock import DataDirBusy, DataDirLock
from listener.service import EXIT_OK, build_listener
from tests.helpers import stored_arg
from tests.sim_thread import SimulatorThread

pytestmark = pytest.mark.integration

TOKEN = "service-token-0123456789"


def settings_for(tmp_path: Path, ha_url: str, redis_url: str, **overrides: Any) -> Settings:
    return load_settings(
        ha_url=ha_url,
        ha_token=TOKEN,
        celery_broker_url=redis_url,
        data_dir=tmp_path / "data",
        health_port=free_port(),
        **overrides,
    )


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


async def until(predicate: Any, within_s: float, message: str) -> None:
    """Poll `predicate` on the loop (the listener runs on it too) until true, with a deadline."""
    deadline = time.monotonic() + within_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within_s:g} s waiting for {message}")
        await asyncio.sleep(0.02)


def test_run_starts_every_part_and_stops_them_all(tmp_path: Path, redis_url: str) -> None:
    sim = SimulatorThread(token=TOKEN, rate=50, events=100).start()
    settings = settings_for(tmp_path, sim.sim.url, redis_url)
    try:
        service = build_listener(settings)
        with pytest.raises(DataDirBusy):  # built is enough to hold DATA_DIR
            build_listener(settings)
        stats = service.listener.stats

        async def main() -> int:
            running = asyncio.create_task(service.run())
            await until(lambda: stats.events_received >= 20, 20, "events received")
            await until(lambda: listening(settings.health_port), 5, "the health server")
            await service.client.stop()  # what SIGTERM does
            return await asyncio.wait_for(running, 20)

        assert asyncio.run(main()) == EXIT_OK
    finally:
        sim.stop()
    assert stats.connection_state == "stopped"
    assert not listening(settings.health_port)
    DataDirLock(settings.data_dir).release()  # the lock was released
    saved = json.loads((settings.data_dir / "listener-state.json").read_text(encoding="utf-8"))
    assert saved["handed_off_through"], "the watermark was saved after the flush"
    assert service.publisher.backlog == 0, "memory was flushed"
    handed = stats.events_enqueued + stats.events_spooled
    assert handed == stats.snapshot_states + stats.events_received, "to the broker or the spool"


def test_a_part_that_cannot_be_built_closes_what_was_opened_before_it(
    tmp_path: Path, redis_url: str
) -> None:
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("", encoding="utf-8")
    settings = settings_for(
        tmp_path, "ws://127.0.0.1:9/api/websocket", redis_url,
        ha_trace_frames=not_a_folder / "trace.jsonl",
    )  # fmt: skip
    with pytest.raises(SettingsError, match="HA_TRACE_FRAMES: cannot write the frame trace"):
        build_listener(settings)
    # The DATA_DIR lock (built before the trace) was released: another build gets it.
    DataDirLock(settings.data_dir).release()


def test_without_ha_url_or_token_it_says_what_to_set(tmp_path: Path, redis_url: str) -> None:
    settings = load_settings(celery_broker_url=redis_url, data_dir=tmp_path / "data")
    with pytest.raises(SettingsError, match=r"set HA_URL .* and HA_TOKEN"):
        build_listener(settings)
    assert not (tmp_path / "data").exists(), "nothing was opened"


def test_the_home_is_named_after_ha_once_and_keeps_its_name(
    tmp_path: Path, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Without HA_INSTANCE: the name is made from HA's location name at the first login, kept
    in DATA_DIR, carried by every message and used for the registries' keys; a later rename of
    the home in HA changes nothing (and the log says so)."""
    caplog.set_level(logging.INFO, logger="listener")
    sim = SimulatorThread(token=TOKEN, rate=50, events=40, location_name="Holiday Home").start()
    settings = settings_for(tmp_path, sim.sim.url, redis_url)
    broker = redis.Redis.from_url(redis_url)
    try:
        _run_until_events(settings, 10)
        assert "this home is named 'holiday_home', made from HA's location name" in caplog.text
        sim.sim.location_name = "Renamed Home"
        caplog.clear()
        _run_until_events(settings, 10)
        assert "but this home keeps the name 'holiday_home'" in caplog.text
    finally:
        sim.stop()
    messages = [stored_arg(raw) for raw in broker.lrange(settings.celery_queue, 0, -1)]
    assert len(messages) > 40
    assert {m.get("instance") for m in messages} == {"holiday_home"}
    assert {m["source"] for m in messages} >= {"snapshot", "live"}
    home_keys = RedisKeys(settings.redis_prefix).for_home("holiday_home")
    assert broker.exists(home_keys.registry("areas"))
    assert not broker.exists(RedisKeys(settings.redis_prefix).registry("areas"))


def _run_until_events(settings: Settings, events: int) -> None:
    service = build_listener(settings)
    stats = service.listener.stats

    async def main() -> int:
        running = asyncio.create_task(service.run())
        await until(lambda: stats.events_received >= events, 20, "events received")
        await service.client.stop()
        return await asyncio.wait_for(running, 20)

    assert asyncio.run(main()) == EXIT_OK
