"""Figures as people read them (core.text_format)."""

from __future__ import annotations

import pytest

from core.text_format import format_count, format_duration, format_rate


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.4, "0 s"),
        (45, "45 s"),
        (119.6, "2 min"),
        (12 * 60 + 59, "12 min"),
        (7199, "119 min"),
        (7200, "2 h"),
        (2 * 3600 + 5 * 60, "2 h 5 min"),
        (3 * 86400 + 4 * 3600, "3 d 4 h"),
        (-3, "0 s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_format_numbers() -> None:
    assert format_count(48000) == "48,000"
    assert format_rate(35.4) == "35/min"
    assert format_rate(1196.2) == "1,196/min"
    assert format_rate(0.25) == "0.2/min"
