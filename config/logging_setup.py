"""One logging set-up for every process: plain lines, secrets masked in every record."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

from config.redaction import SecretFilter

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str, secrets: Iterable[str]) -> None:
    """Log to stderr at `level`, masking each secret, for this process."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    install_secret_filter(secrets)
    for noisy in ("websockets", "urllib3", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def install_secret_filter(secrets: Iterable[str]) -> None:
    """Attach the secret filter to every handler of the root logger (Celery's included)."""
    secret_filter = SecretFilter(secrets)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, SecretFilter) for f in handler.filters):
            handler.addFilter(secret_filter)
