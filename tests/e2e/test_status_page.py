"""The status page in a real browser (Debian's headless Chromium) against a running stack.

Asserts on the DOM after the page's script ran: the chart, the status, the reasons and the
figures are built by JavaScript from the embedded /health document, and the page refreshes
itself. A screenshot is kept under test-artifacts/ (gitignored) for a person to look at.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import redis

from core.health_beat import beat_figures
from core.health_check import Thresholds
from devtools.local_servers import free_port
from listener.health.stats import ListenerStats
from listener.health.status_page import render_status_page
from listener.health.view import listener_health
from tests.helpers import wait_until
from tests.processes import AppProcess, app_env, beat_argv, listener_argv, worker_argv
from tests.sim_thread import SimulatorThread
from tests.unit.core.test_destination_health import FAILING, NOW, WRITING, several
from tests.unit.core.test_fleet_view import home as fleet_home
from tests.unit.core.test_fleet_view import listener as fleet_listener
from tests.unit.core.test_fleet_view import readings as fleet_readings

pytestmark = pytest.mark.e2e

TOKEN = "status-page-token-0123456789"
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if found is None:
        pytest.fail(
            "chromium is missing: sudo apt-get install -y chromium (or run `make test`)",
            pytrace=False,
        )
    return found


def browse(chromium: str, profile: Path, *args: str, budget_ms: int = 0) -> str:
    """Run headless Chromium once with a fresh profile; returns its stdout."""
    argv = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", "--window-size=1280,1100",
        "--hide-scrollbars",
    ]  # fmt: skip
    if budget_ms:
        argv.append(f"--virtual-time-budget={budget_ms}")
    done = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


class Dom(HTMLParser):
    """Elements by id, with their attributes and text; bars and rows in order."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.by_id: dict[str, dict[str, Any]] = {}
        self.body: dict[str, str] = {}
        self.bars: list[dict[str, str]] = []
        self.fields: dict[str, str] = {}
        self.reasons: list[dict[str, str]] = []
        self.entity_rows: list[str] = []
        self._open: list[tuple[str, dict[str, Any]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        node: dict[str, Any] = {"tag": tag, "attrs": a, "text": ""}
        if tag == "body":
            self.body = a
        if "id" in a:
            self.by_id[a["id"]] = node
        if tag == "rect" and "bar" in a.get("class", ""):
            self.bars.append(a)
        if tag == "li" and "data-code" in a:
            self.reasons.append(a)
        if tag == "tr" and "data-name" in a and self._inside("entities"):
            self.entity_rows.append(a["data-name"])
        self._open.append((tag, node))

    def _inside(self, element_id: str) -> bool:
        return any(node["attrs"].get("id") == element_id for _, node in self._open)

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            open_tag, node = self._open.pop()
            if open_tag == "td" and "data-field" in node["attrs"]:
                self.fields[node["attrs"]["data-field"]] = node["text"]
            if open_tag == "li" and "data-code" in node["attrs"]:
                node["attrs"]["text"] = node["text"]
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        for _, node in self._open:
            node["text"] += data


@pytest.fixture(scope="module")
def page_url(
    tmp_path_factory: pytest.TempPathFactory, redis_server: Any, influxdb_server: Any
) -> Iterator[tuple[str, SimulatorThread]]:
    tmp = tmp_path_factory.mktemp("status-page")
    sim = SimulatorThread(token=TOKEN, rate=30, entities=30).start()
    query = urllib.request.Request(
        f"{influxdb_server.url}/query", data=b"q=CREATE+DATABASE+status_page"
    )
    urllib.request.urlopen(query, timeout=10).read()
    port = free_port()
    broker = f"redis://127.0.0.1:{redis_server.port}/13"
    # DB 13 of the session Redis is also in the rotation other tests draw from: empty it, or
    # their counters (dead letters, write errors) show on this page.
    with redis.Redis.from_url(broker) as client:
        client.flushdb()
    env = app_env(
        HA_URL=sim.sim.url,
        HA_TOKEN=TOKEN,
        CELERY_BROKER_URL=broker,
        INFLUXDB_URL=influxdb_server.url,
        INFLUXDB_DATABASE="status_page",
        HEALTH_PORT=str(port),
        DATA_DIR=str(tmp / "data"),
        BEAT_INTERVAL="1",
        HEALTH_EVENT_GAP="2",
    )
    processes = [
        AppProcess("listener", listener_argv(), env, tmp).start(),
        AppProcess("worker", worker_argv(), env, tmp).start(),
        AppProcess("beat", beat_argv(tmp / "schedule"), env, tmp).start(),
    ]
    url = f"http://127.0.0.1:{port}/"
    try:
        yield url, sim
    finally:
        for process in processes:
            process.stop()
        sim.stop()


def health(url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"{url}health", timeout=3) as reply:
            body: dict[str, Any] = json.load(reply)
            return body
    except OSError:
        return {}


def test_the_page_renders_the_status_the_chart_and_the_figures(
    page_url: tuple[str, SimulatorThread], chromium: str, tmp_path: Path
) -> None:
    url, _ = page_url
    wait_until(
        lambda: (
            health(url).get("status") == "healthy"
            and health(url)["rates"]["top_entities"]
            and health(url)["pipeline"]["written"]
        ),
        40,
        0.2,
        "a healthy stack with rates",
    )
    expected = health(url)
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "status-page.png"
    screenshot.unlink(missing_ok=True)
    browse(chromium, tmp_path / "shot", f"--screenshot={screenshot}", url)
    assert screenshot.stat().st_size > 10_000
    dom = Dom(browse(chromium, tmp_path / "dom", "--dump-dom", url))

    assert dom.body.get("data-rendered") == "yes"  # the script ran
    assert dom.by_id["status"]["text"] == "healthy"
    assert "healthy" in dom.by_id["status"]["attrs"]["class"]
    assert "All good" in dom.by_id["reasons"]["text"]
    chart = dom.by_id["rate-chart"]
    assert chart["tag"] == "svg"
    assert chart["attrs"]["data-points"] == "60"
    assert len(dom.bars) == 60
    # This minute's events (or the last minute's, when the page was read as a minute began).
    assert any(int(bar["data-count"]) > 0 for bar in dom.bars[-2:])
    assert any(float(bar["height"]) > 0 for bar in dom.bars[-2:])
    assert "connection.state" in dom.fields
    assert dom.fields["connection.state"].startswith("subscribed (HA ")
    assert dom.fields["pipeline.queue_depth"].replace(",", "").isdigit()
    assert int(dom.fields["subscription.total_events_received"].replace(",", "")) > 0
    # Every figure of the report's listener section has a row of its own.
    shown = {f"listener.{key}" for key in expected["listener"] if key != "present"}
    assert shown <= set(dom.fields)
    # The ranking can shift between the two reads: one of the leaders is on the page.
    leaders = {row["entity_id"] for row in expected["rates"]["top_entities"][:5]}
    assert leaders & set(dom.entity_rows)
    assert "sensor" in dom.by_id["domains"]["text"]


def test_the_page_refreshes_itself_and_shows_the_reasons(
    page_url: tuple[str, SimulatorThread], chromium: str, tmp_path: Path
) -> None:
    url, sim = page_url
    sim.do(sim.sim.pause_events)
    try:
        wait_until(lambda: health(url).get("status") == "degraded", 20, 0.2, "degraded")
        # Virtual time lets the page's 5 s refresh timer fire (twice) before the DOM is dumped.
        dom = Dom(browse(chromium, tmp_path / "dom", "--dump-dom", url, budget_ms=11_000))
    finally:
        sim.do(sim.sim.resume_events)
    assert int(dom.body.get("data-refreshes", "0")) >= 1
    assert dom.by_id["status"]["text"] == "degraded"
    assert dom.by_id["error"]["attrs"].get("hidden") is not None
    codes = [r["data-code"] for r in dom.reasons]
    assert "no_events" in codes
    reason = next(r for r in dom.reasons if r["data-code"] == "no_events")
    assert "while subscribed" in reason["text"]
    assert reason["class"] == "degraded"


def test_the_page_lists_each_destination_when_there_are_several(
    chromium: str, tmp_path: Path
) -> None:
    """The page of a two-destination report, in the browser: a row per destination with its
    lag, write errors and backlog; the section stays hidden with one destination."""
    figures, _ = beat_figures(several(WRITING, FAILING), None, Thresholds(window_s=300))
    report = listener_health(ListenerStats(NOW - 60), NOW, beat=figures)
    page = tmp_path / "two.html"
    page.write_text(render_status_page(report), encoding="utf-8")
    dom = Dom(browse(chromium, tmp_path / "two", "--dump-dom", page.as_uri()))
    assert dom.body.get("data-rendered") == "yes"
    assert dom.by_id["destinations-section"]["attrs"].get("hidden") is None
    # The cells' texts run together: name, written, 5 min rate, lag, errors, dead letters, backlog.
    table = dom.by_id["destinations"]["text"]
    assert "archive" + "10" + "2.0/min" + "4 min" + "3 (3 recent)" + "0" + "120 (parked)" in table
    assert "default" + "130" + "26/min" + "0 s" + "0" + "0" + "0" in table

    alone = dict(report, destinations={"default": report["destinations"]["default"]})
    page.write_text(render_status_page(alone), encoding="utf-8")
    dom = Dom(browse(chromium, tmp_path / "one", "--dump-dom", page.as_uri()))
    assert dom.by_id["destinations-section"]["attrs"].get("hidden") is not None


def test_the_page_shows_the_fleet_with_the_silent_home_named(chromium: str, tmp_path: Path) -> None:
    """The page of a listener among two homes, in the browser: its own home in the header, a
    row per home with its state, events/s, lag, reconnects and worst reason, the silent home
    marked, and the fleet's totals; hidden with one home."""
    homes = {
        "main": fleet_home(fleet_listener()),
        "holiday": fleet_home(None, 0, last_seen_at=NOW - 60),
    }
    figures, _ = beat_figures(fleet_readings(homes), None, Thresholds(listener_stale_s=15))
    stats = ListenerStats(NOW - 60)
    stats.instance = "main"
    report = listener_health(stats, NOW, beat=figures)
    page = tmp_path / "fleet.html"
    page.write_text(render_status_page(report), encoding="utf-8")
    dom = Dom(browse(chromium, tmp_path / "fleet", "--dump-dom", page.as_uri()))
    assert dom.body.get("data-rendered") == "yes"
    assert dom.by_id["home"]["text"] == "home main"
    assert dom.by_id["homes-section"]["attrs"].get("hidden") is None
    table = dom.by_id["homes"]["text"]
    assert "holiday" + "SILENT" + "0.0" + "60 s" + "0" + "home holiday silent" in table
    assert "main" + "subscribed" + "2.0" + "1 s" + "0" + "none" in table
    totals = dom.by_id["fleet-totals"]["text"]
    assert (
        totals
        == "2 homes, 1 subscribed, 2.0 events/s, 0 reconnects in the last hour; silent: holiday"
    )

    alone = dict(report, homes={"main": report["homes"]["main"]})
    page.write_text(render_status_page(alone), encoding="utf-8")
    dom = Dom(browse(chromium, tmp_path / "one", "--dump-dom", page.as_uri()))
    assert dom.by_id["homes-section"]["attrs"].get("hidden") is not None
