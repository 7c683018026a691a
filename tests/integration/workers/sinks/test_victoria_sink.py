"""VictoriaSink against the real victoria-metrics: texts read back as labels, never as 0."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.transform import Point
from devtools.local_servers import free_port
from tests.helpers import Victoria
from workers.sinks.errors import SinkUnavailable
from workers.sinks.victoria_sink import VictoriaSink

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_000 * 10**6  # whole milliseconds: VictoriaMetrics keeps ms


@pytest.fixture
def sink(victoria: Victoria) -> Iterator[VictoriaSink]:
    sink = VictoriaSink(victoria.url, text_values_max=2, text_window=3600)
    yield sink
    sink.close()


def _point(entity: str, fields: tuple[tuple[str, float | str], ...], i: int) -> Point:
    domain, _ = entity.split(".")
    return Point("state", (("domain", domain), ("entity_id", entity)), fields, T0 + i * 10**9)


def _write(sink: VictoriaSink, points: list[Point]) -> None:
    sink.write([sink.encode(point, "ns") for point in points])


def test_every_text_and_number_reads_back(sink: VictoriaSink, victoria: Victoria) -> None:
    points = [
        _point("binary_sensor.door", (("state", "on"), ("value", 1.0)), 0),
        _point("binary_sensor.door", (("state", "off"), ("value", 0.0)), 1),
        _point("person.anna", (("state", "home"), ("friendly_name_str", "Anna, A")), 2),
        _point("person.anna", (("state", "not_home"),), 3),
        _point("sensor.temp", (("value", 21.5),), 4),
    ]
    _write(sink, points)
    samples = {
        (s["metric"]["__name__"], s["metric"]["entity_id"], s["metric"].get("state")): list(
            zip(s["timestamps"], s["values"], strict=True)
        )
        for s in victoria.export()
    }
    ms = T0 // 10**6
    assert samples[("state_state", "binary_sensor.door", "on")] == [(ms, 1)]
    assert samples[("state_state", "binary_sensor.door", "off")] == [(ms + 1000, 1)]
    assert samples[("state_state", "person.anna", "home")] == [(ms + 2000, 1)]
    assert samples[("state_state", "person.anna", "not_home")] == [(ms + 3000, 1)]
    assert samples[("state_value", "binary_sensor.door", None)] == [(ms, 1), (ms + 1000, 0)]
    assert samples[("state_value", "sensor.temp", None)] == [(ms + 4000, 21.5)]
    [name] = victoria.export('{__name__="state_friendly_name_str"}')
    assert name["metric"]["friendly_name_str"] == "Anna, A"
    zeroed = [s for s in victoria.export() if not s["metric"]["__name__"].endswith("_value")]
    assert all(v == 1 for s in zeroed for v in s["values"]), "no text stored as 0"


def test_the_guard_counts_what_it_leaves_out(sink: VictoriaSink, victoria: Victoria) -> None:
    texts = ["a", "b", "a", "c", "d"]
    _write(sink, [_point("sensor.note", (("state", t),), i) for i, t in enumerate(texts)])
    kept = {s["metric"]["state"] for s in victoria.export('{__name__="state_state"}')}
    assert kept == {"a", "b"}
    assert sink.take_left_out() == 2
    assert sink.take_left_out() == 0


def test_probe_accepts_and_a_wrong_path_says_how_to_fix_it(
    sink: VictoriaSink, victoria: Victoria
) -> None:
    assert sink.probe() is None
    wrong = VictoriaSink(victoria.url + "/nowhere")
    refusal = wrong.probe()
    assert refusal is not None
    assert "INFLUXDB_URL must be VictoriaMetrics itself" in refusal.fix
    with pytest.raises(SinkUnavailable, match="has no /influx/write"):
        wrong.write(["state value=1 1"])
    wrong.close()


def test_no_server_is_unavailable() -> None:
    sink = VictoriaSink(f"http://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(SinkUnavailable, match="cannot reach VictoriaMetrics"):
        sink.write(["state value=1 1"])
    sink.close()
