"""Secrets are masked in URLs and in every log record."""

from __future__ import annotations

import logging

from config.redaction import MASK, SecretFilter, redact_url


def test_passwords_in_urls_are_masked() -> None:
    assert redact_url("redis://:pw123@127.0.0.1:6379/0") == f"redis://:{MASK}@127.0.0.1:6379/0"
    assert redact_url("amqp://guest:guest@host:5672//") == f"amqp://guest:{MASK}@host:5672//"
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_the_log_filter_masks_messages_arguments_and_tracebacks() -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "token %s", ("s3cr3t-tok",), None)
    try:
        raise ValueError("bad s3cr3t-tok")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    SecretFilter(["s3cr3t-tok"]).filter(record)
    formatted = logging.Formatter().format(record)
    assert "s3cr3t-tok" not in formatted
    assert MASK in formatted
