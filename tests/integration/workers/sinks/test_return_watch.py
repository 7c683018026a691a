"""The wait between write attempts against a real HTTP server on loopback: it ends within a
probe interval of the server answering again (from silence or from refusals), sleeps out its
delay when the server already answered at its start, ends at once when the worker stops; a
probe of any sink kind gives up on a silent server after its own short timeout."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from devtools.local_servers import free_port
from workers.hand_back import HandBackPacer
from workers.pipeline import BatchOutcome
from workers.sinks.errors import SinkUnavailable
from workers.sinks.influx_sink import Sink, V1Sink, V2Sink
from workers.sinks.influxdb3_sink import InfluxDB3Sink
from workers.sinks.return_watch import ReturnWatch
from workers.sinks.victoria_sink import VictoriaSink

pytestmark = pytest.mark.integration


class Store:
    """A stand-in write endpoint on a fixed port: answers `status` to every request, counts
    them; can be started late (nothing listening before)."""

    def __init__(self, port: int, status: int = 204) -> None:
        self.port = port
        self.status = status
        self.requests = 0
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        store = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                store.requests += 1
                self.send_response(store.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@pytest.fixture
def store() -> Iterator[Store]:
    server = Store(free_port())
    try:
        yield server
    finally:
        server.stop()


def later(seconds: float, action: Callable[[], object]) -> threading.Timer:
    timer = threading.Timer(seconds, action)
    timer.start()
    return timer


def timed(watch: ReturnWatch, delay: float) -> tuple[bool, float]:
    started = time.monotonic()
    stopping = watch.wait(delay)
    return stopping, time.monotonic() - started


def test_the_wait_ends_soon_after_a_silent_server_answers(store: Store) -> None:
    watch = ReturnWatch(V1Sink(store.url, "ha"), threading.Event())
    later(1.0, store.start)
    stopping, took = timed(watch, 30.0)
    assert stopping is False
    assert 0.9 < took < 10, "soon after the server's return, not the 30 s backoff"


def test_the_wait_ends_when_refusals_turn_into_acceptance(store: Store) -> None:
    store.status = 503
    store.start()
    watch = ReturnWatch(V1Sink(store.url, "ha"), threading.Event())
    later(1.0, lambda: setattr(store, "status", 204))
    stopping, took = timed(watch, 30.0)
    assert stopping is False
    assert 0.9 < took < 10, "soon after the server accepts, not the 30 s backoff"
    assert store.requests >= 2


def test_a_server_that_accepted_at_the_start_is_not_probed_again(store: Store) -> None:
    """Up, yet the write failed (a 503 under load): the backoff is slept out, one probe."""
    store.start()
    watch = ReturnWatch(V1Sink(store.url, "ha"), threading.Event())
    stopping, took = timed(watch, 1.2)
    assert stopping is False
    assert took >= 1.2
    assert store.requests == 1


def test_a_stopping_worker_ends_the_wait_at_once(store: Store) -> None:
    stopping = threading.Event()
    watch = ReturnWatch(V1Sink(store.url, "ha"), stopping)
    later(0.3, stopping.set)
    stopped, took = timed(watch, 30.0)
    assert stopped is True
    assert took < 10, "at once, not after the 30 s delay"


def test_with_no_server_the_whole_delay_is_waited(store: Store) -> None:
    watch = ReturnWatch(V1Sink(store.url, "ha"), threading.Event())
    stopping, took = timed(watch, 1.2)
    assert stopping is False
    assert 1.2 <= took < 4, "the delay, and no probe long past it"


@pytest.fixture
def blackhole() -> Iterator[str]:
    """A port that takes connections and never answers (an influxd stopped with SIGSTOP)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


SINKS: dict[str, Callable[[str], Sink]] = {
    "v1": lambda url: V1Sink(url, "ha", timeout=10),
    "v2": lambda url: V2Sink(url, token="t", org="o", bucket="b", timeout=10),
    "influxdb3": lambda url: InfluxDB3Sink(url, token="t", database="ha", timeout=10),
    "victoria": lambda url: VictoriaSink(url, timeout=10),
}


@pytest.mark.parametrize("kind", SINKS)
def test_a_probe_gives_up_on_a_silent_server_after_its_own_timeout(
    blackhole: str, kind: str
) -> None:
    """Every sink kind: a probe's timeout, not INFLUXDB_TIMEOUT (10 s here)."""
    sink = SINKS[kind](blackhole)
    started = time.monotonic()
    with pytest.raises(SinkUnavailable, match="cannot reach"):
        sink.probe(timeout=0.3)
    assert time.monotonic() - started < 5, "its own 0.3 s timeout, not the sink's 10 s"
    stopping, took = timed(ReturnWatch(sink, threading.Event(), timeout=0.3), 1.0)
    assert stopping is False
    assert took < 5, "no probe overstays the delay by the sink's 10 s timeout"
    sink.close()


def test_the_pause_after_a_hand_back_ends_when_the_server_answers(store: Store) -> None:
    """The worker's pacer (workers/hand_back.py) waits the same way when given the sink."""
    stopping = threading.Event()
    pacer = HandBackPacer(
        stopping, cap=30.0, backoff=lambda: iter([30.0]), sink=V1Sink(store.url, "ha")
    )
    pacer.record(BatchOutcome(handed_back=[0]))
    assert pacer.delay() == 30.0
    later(1.0, store.start)
    started = time.monotonic()
    assert pacer.wait() is False
    assert 0.9 < time.monotonic() - started < 10, "not the 30 s pause"
