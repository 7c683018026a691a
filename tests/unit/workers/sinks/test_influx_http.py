"""The words a refusal is reported in: the server's own, whichever way it said them."""

from __future__ import annotations

import pytest

from workers.sinks.influx_http import MAX_ERROR_TEXT, server_words


@pytest.mark.parametrize(
    ("body", "reason", "header", "expected"),
    [
        (b'{"error": "partial write"}', "Bad Request", "other", "partial write"),
        (b"", "Bad Request", "field type conflict", "field type conflict"),
        (b"  unsupported path  ", "Bad Request", None, "unsupported path"),
        (b"", "Unauthorized", None, "Unauthorized"),
        (b"", None, None, "HTTP 503"),
        (b'{"code": "invalid"}', None, None, '{"code": "invalid"}'),
    ],
)
def test_the_json_error_then_the_header_then_the_body_then_the_reason(
    body: bytes, reason: str | None, header: str | None, expected: str
) -> None:
    status = 503 if expected == "HTTP 503" else 400
    assert server_words(body, reason, status, header) == expected


def test_a_long_answer_is_clipped() -> None:
    words = server_words(b"x" * (MAX_ERROR_TEXT * 2), None, 400)
    assert words == "x" * MAX_ERROR_TEXT + "…"
