"""Workers on other hosts: the servers, the listener (beside its HA) and the workers each on a
host of their own, joined only by a LAN the test builds (tests/netns.py), every process real.

With DEFAULT settings (only addresses given): every event lands; SIGKILL of every process on
the workers' host (the worker mid-batch and beat) while events flow, then a worker started on
a fourth host finds the dead worker's messages and writes them within 60 s, nothing lost (beat
died with the worker: the spare worker's own sweep gives them back). The servers listen on
their real default ports on their own host's address only, Redis with a password (it refuses
other hosts without one); which process connected to which address and port is read on each
host (`ss -p`) and checked against what docs/deployment.md ("Several hosts") says it needs.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

from config.redis_keys import RedisKeys
from devtools.local_servers import InfluxDBServer, RedisServer
from tests.expectations import (
    expected_points,
    ha_states,
    points_in_influx,
    recorded_events,
    state_events,
)
from tests.helpers import InfluxDatabase, InfluxQL, wait_until
from tests.netns import Host, Sandbox
from tests.processes import AppProcess, app_env, beat_argv, listener_argv, worker_argv
from tests.sim_thread import SimulatorThread
from workers.consumers.bulk_queue import given_back, in_flight

pytestmark = pytest.mark.faults

T = TypeVar("T")
TOKEN = "hosts-token-0123456789"
# Redis refuses clients from other hosts without a password (protected mode): as in production.
REDIS_PASSWORD = "hosts-redis-password-0123"
EVENTS = 6000
RATE = 200.0
# The defaults of each program: nothing on the machine's own namespace can clash with them.
REDIS_PORT, INFLUX_PORT, HA_PORT, HEALTH_PORT = 6379, 8086, 8123, 8001
DATABASE = "home_assistant"
QUEUE = "ha_events"


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root: sudo .venv/bin/pytest " + __file__)
    built = Sandbox()
    try:
        yield built
    finally:
        built.close()
    assert not built.leftovers()


class Servers:
    """The broker's Redis and InfluxDB as the test sees them, from inside their host."""

    def __init__(
        self, host: Host, broker_url: str, influx_url: str, clients: tuple[Host, ...]
    ) -> None:
        self.host = host
        with host.inside():
            self.redis = redis.Redis.from_url(broker_url)
            self.influx = InfluxDatabase(influx_url, DATABASE, InfluxQL(influx_url))
        self.clients = clients
        self.reached: dict[int, set[tuple[str, int]]] = {}
        """pid -> (address, port) it was seen connected to, on any client host."""
        self.listening: dict[int, set[int]] = {}
        """pid -> ports it was seen listening on, on any client host."""

    def ask(self, question: Callable[[Servers], T]) -> T:
        """question(self), its connections made (or remade) on the servers' host; and note
        which process of the other hosts is connected to which address and port."""
        for client in self.clients:
            for pid, _, peer in client.sockets("established"):
                self.reached.setdefault(pid, set()).add(peer)
            for pid, (_, port), _ in client.sockets("listening"):
                self.listening.setdefault(pid, set()).add(port)
        with self.host.inside():
            return question(self)

    def points(self) -> int:
        return self.ask(lambda s: len(points_in_influx(s.influx)))

    def held(self) -> int:
        return self.ask(lambda s: sum(in_flight(s.redis).values()))


def documented_ports() -> dict[str, tuple[set[int], set[int]]]:
    """docs/deployment.md's "Several hosts" table: process -> (ports it connects to, ports it
    listens on)."""
    text = (Path(__file__).parents[2] / "docs" / "deployment.md").read_text(encoding="utf-8")
    section = text.split("\n## Several hosts\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\w+) +\| (.+?) +\| (.+?) +\|$", section, re.M)

    def ports(cell: str) -> set[int]:
        return {int(port) for port in re.findall(r"\b\d{4}\b", cell)}

    return {name: (ports(out), ports(into)) for name, out, into in rows if name != "process"}


def _health(host: Host) -> dict[str, Any]:
    with host.inside():
        url = f"http://{host.address}:{HEALTH_PORT}/health"
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                body: dict[str, Any] = json.load(reply)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        except OSError:
            body = {"listener": {"events_enqueued": -1}}
        return body


def test_a_dead_workers_host_loses_nothing_and_a_fourth_host_writes_its_messages(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    began = time.monotonic()
    on_servers, on_listeners, on_workers, on_spare = (
        sandbox.host(role) for role in ("servers", "listeners", "workers", "spare")
    )
    broker_url = f"redis://:{REDIS_PASSWORD}@{on_servers.address}:{REDIS_PORT}/0"
    influx_url = f"http://{on_servers.address}:{INFLUX_PORT}"
    record = tmp_path / "sent.jsonl"
    for host in ("servers", "listeners", "workers", "spare"):
        (tmp_path / host).mkdir()
    with ExitStack() as stack:
        with on_servers.inside():
            address, prefix = on_servers.address, on_servers.argv([])
            redis_server = RedisServer(
                tmp_path / "servers" / "redis",
                REDIS_PORT,
                extra_args=["--requirepass", REDIS_PASSWORD],
                host=address,
                command_prefix=prefix,
            )
            stack.enter_context(redis_server)
            influx_server = InfluxDBServer(
                tmp_path / "servers" / "influxdb", INFLUX_PORT, host=address, command_prefix=prefix
            )
            stack.enter_context(influx_server)
            InfluxQL(influx_url).results(f'CREATE DATABASE "{DATABASE}"')
        servers = Servers(on_servers, broker_url, influx_url, (on_listeners, on_workers, on_spare))
        with on_listeners.inside():  # the simulator's thread, and so its socket, live there
            sim = SimulatorThread(
                host=on_listeners.address,
                port=HA_PORT,
                token=TOKEN,
                rate=RATE,
                events=EVENTS,
                entities=40,
                record_path=record,
            ).start(paused=True)
        stack.callback(sim.stop)

        def start(host: Host, name: str, argv: list[str], **settings: str) -> AppProcess:
            env = app_env(DATA_DIR=str(tmp_path / host.netns.rsplit("-", 1)[1]), **settings)
            process = AppProcess(name, host.argv(argv), env, tmp_path).start()
            stack.callback(process.stop)
            return process

        # Only addresses: every other setting keeps its default (the liveness timeout above all).
        to_servers = {"CELERY_BROKER_URL": broker_url, "INFLUXDB_URL": influx_url}
        worker = start(on_workers, "worker", worker_argv(), **to_servers)
        beat = start(
            on_workers, "beat", beat_argv(tmp_path / "workers" / "beat-schedule"), **to_servers
        )
        listener = start(
            on_listeners,
            "listener",
            listener_argv(),
            HA_URL=sim.sim.url,
            HA_TOKEN=TOKEN,
            CELERY_BROKER_URL=broker_url,
            HEALTH_HOST=on_listeners.address,
        )

        with on_listeners.inside():
            initial = ha_states(sim.sim.url, TOKEN)
        wait_until(
            lambda: sim.do(lambda: sim.sim.subscriber_count) >= 1,
            30,
            message="the listener subscribed to HA across its host",
        )
        wait_until(
            lambda: _health(on_listeners)["listener"]["events_enqueued"] >= len(initial),
            30,
            message="the snapshot enqueued before HA sends anything new",
        )
        sim.do(sim.sim.resume_events)

        wait_until(
            lambda: servers.ask(lambda s: s.redis.exists(RedisKeys().health())),
            30,
            message="beat's first health report, from the workers' host",
        )
        wait_until(
            lambda: servers.points() >= 500 and servers.held() > 0,
            60,
            0.1,
            message="points written from the workers' host, and a batch held there",
        )
        doomed = on_workers.pids()
        for pid in doomed:
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not on_workers.pids(), 10, message="nothing left on the workers' host")
        stranded = servers.held()
        points_at_kill = servers.points()
        sent_at_kill = len(recorded_events(record))
        assert stranded > 0
        assert sent_at_kill < EVENTS, "the kill must come while events flow"

        spare = start(on_spare, "worker", worker_argv("spare"), **to_servers)
        started = time.monotonic()
        wait_until(
            lambda: servers.ask(lambda s: given_back(s.redis)) >= stranded,
            60,
            0.25,
            message="the dead worker's messages given back by the spare's sweep",
        )
        swept = time.monotonic() - started
        sim.call(sim.sim.wait_done(), timeout=EVENTS / RATE + 30)
        sent = recorded_events(record)
        expected = expected_points(state_events(initial) + sent)
        wait_until(
            lambda: servers.points() >= len(expected),
            max(1.0, started + 60 - time.monotonic()),
            0.25,
            message=f"{len(expected)} points in InfluxDB 60 s after the spare started",
        )
        written = time.monotonic() - started

        found = servers.ask(lambda s: points_in_influx(s.influx))
        assert len(sent) == EVENTS
        assert found.keys() == expected.keys()
        assert servers.ask(lambda s: given_back(s.redis)) == stranded
        wait_until(
            lambda: servers.held() == 0 and servers.ask(lambda s: s.redis.llen(QUEUE)) == 0,
            15,
            message="nothing left in the queue or held",
        )
        assert _health(on_listeners)["subscription"]["total_events_received"] == EVENTS
        assert listener.running()

        servers.ask(lambda s: s.redis.close())
        processes = {"listener": listener, "worker": worker, "beat": beat, "spare worker": spare}
        reached = {
            name: sorted(servers.reached.get(process.pid, set()))
            for name, process in processes.items()
        }
        listening = {
            name: sorted(servers.listening.get(process.pid, set()))
            for name, process in processes.items()
        }
        print(
            f"\nFIGURES several hosts (default settings): {EVENTS} events sent at {RATE:g}/s "
            f"(+{len(initial)} initial states), {len(found)} points found of {len(expected)} "
            f"expected; SIGKILL of {len(doomed)} processes on the workers' host after "
            f"{sent_at_kill} events, {points_at_kill} points, {stranded} messages held; "
            f"the spare host's worker gave them back {swept:.1f} s and wrote the last point "
            f"{written:.1f} s after its start; what each process connected to: {reached}, "
            f"listened on: {listening}; wall time {time.monotonic() - began:.0f} s"
        )
        assert written <= 60
        redis_, influxdb = (on_servers.address, REDIS_PORT), (on_servers.address, INFLUX_PORT)
        assert reached == {
            "listener": sorted([redis_, (on_listeners.address, HA_PORT)]),
            "worker": sorted([redis_, influxdb]),
            "beat": [redis_],
            "spare worker": sorted([redis_, influxdb]),
        }
        # What each process needs to reach and opens, as docs/deployment.md says.
        documented = documented_ports()
        for name in processes:
            role = name.split()[-1]
            seen = ({port for _, port in reached[name]}, set(listening[name]))
            assert seen == documented[role], (name, seen, documented[role])
