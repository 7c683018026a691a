"""Every field of the listener's figures reaches every view: the live counters, the Redis
document, the health report and /metrics — iterated over the fields, so a new figure is tested
the moment it is declared (core/listener_figures.py)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import fields
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from core.health_check import Thresholds
from core.health_report import build_report
from core.listener_figures import DESCRIBED, Described, Figure, ListenerFigures, gauge
from listener.health.server import HealthCollector
from listener.health.stats import ListenerStats

NOW = 1_800_000_000.0


def distinct_value(described: Described, n: int) -> Any:
    """A value of the field's type that no other field has and that is not its default."""
    type_name = str(next(f.type for f in fields(ListenerFigures) if f.name == described.name))
    if type_name in ("float", "float | None"):
        return NOW - 1000 * n - 0.125
    if type_name in ("int", "int | None"):
        return 1000 + n
    if type_name in ("str", "str | None"):
        return f"{described.name} text"
    if type_name == "bool":
        return not described.default
    if type_name == "bool | None":
        return False  # not None, and a false flag must still show
    assert type_name in ("dict[str, int]", "Counter[str]"), (
        f"{described.name}: a type this test cannot set"
    )
    counts = {f"{described.name}-a": n, f"{described.name}-b": n + 1}
    return Counter(counts) if type_name == "Counter[str]" else counts


def every_figure_set() -> tuple[ListenerStats, dict[str, Any]]:
    """Live counters with every figure set to a value of its own, and those values."""
    stats = ListenerStats()
    values = {}
    for n, described in enumerate(DESCRIBED, start=1):
        if described.name != "reported_at":
            values[described.name] = distinct_value(described, n)
            setattr(stats, described.name, values[described.name])
    return stats, values | {"reported_at": NOW}


def shown(described: Described, value: Any) -> Any:
    return round(value, 3) if described.figure.rounded else value


def test_the_snapshot_of_the_live_counters_holds_every_figure() -> None:
    stats, values = every_figure_set()
    figures = stats.snapshot(NOW)
    assert {d.name: getattr(figures, d.name) for d in DESCRIBED} == values
    assert {f.name for f in fields(ListenerFigures)} == {d.name for d in DESCRIBED}


def test_every_figure_reaches_the_redis_document_under_its_name() -> None:
    stats, values = every_figure_set()
    document = stats.snapshot(NOW).to_json()
    assert json.loads(document) == values
    assert ListenerFigures.from_json(document) == stats.snapshot(NOW)


def test_every_figure_reaches_the_report_in_its_section_under_its_key() -> None:
    stats, values = every_figure_set()
    report = build_report(NOW, stats.snapshot(NOW), None, Thresholds(), beat_ran_at=None)
    for described in DESCRIBED:
        section = report[described.figure.section]
        assert section[described.key] == shown(described, values[described.name]), described.name


def scrape(report: dict[str, Any]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(HealthCollector(lambda: report))
    text = generate_latest(registry).decode()
    families = list(text_string_to_metric_families(text))
    assert len({f.name for f in families}) == len(families), "a metric family twice"
    samples = [s for f in families for s in f.samples]
    home = report["listener"]["instance"]
    if home is not None:  # every series is the listener's home's; the tests below read the rest
        assert {s.labels.get("instance") for s in samples} == {home}
    return {
        (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "instance"))): s.value
        for s in samples
    }


def test_every_figure_with_a_metric_reaches_metrics_with_its_value() -> None:
    stats, values = every_figure_set()
    samples = scrape(build_report(NOW, stats.snapshot(NOW), None, Thresholds(), beat_ran_at=None))
    for described in DESCRIBED:
        metric, value = described.figure.metric, values[described.name]
        if metric is None:
            assert described.figure.unmetered, described.name
            continue
        name = f"ha_ingestor_{metric.name}" + ("_total" if metric.kind == "counter" else "")
        if metric.label is None:
            assert samples[(name, ())] == float(value), described.name
        else:
            for label, count in value.items():
                assert samples[(name, ((metric.label, label),))] == count, described.name


def test_metric_names_are_unique_across_the_figures() -> None:
    names = [d.figure.metric.name for d in DESCRIBED if d.figure.metric is not None]
    assert len(names) == len(set(names))


def test_a_figure_gives_a_metric_or_says_why_it_has_none() -> None:
    with pytest.raises(ValueError, match="either a metric or why it has none"):
        Figure("Something counted")
    with pytest.raises(ValueError, match="either a metric or why it has none"):
        Figure("Something counted", metric=gauge("x"), unmetered="because")


def test_a_misspelt_figure_fails_at_once() -> None:
    stats = ListenerStats()
    with pytest.raises(AttributeError):
        stats.events_enqeued = 1  # type: ignore[attr-defined]  # mypy catches it first


def test_beats_type_shadowed_figure_reaches_metrics() -> None:
    stats, _ = every_figure_set()
    report = build_report(NOW, stats.snapshot(NOW), None, Thresholds(), beat_ran_at=None)
    report["pipeline"]["type_shadowed"] = 12
    assert scrape(report)[("ha_ingestor_points_type_shadowed_total", ())] == 12.0


def test_beats_text_left_out_figure_reaches_metrics() -> None:
    stats, _ = every_figure_set()
    report = build_report(NOW, stats.snapshot(NOW), None, Thresholds(), beat_ran_at=None)
    report["pipeline"]["text_left_out"] = 7
    assert scrape(report)[("ha_ingestor_texts_left_out_total", ())] == 7.0
