"""What a broker URL means, decided once from one alias table (kombu's idea) and carried as a
value: `Settings.broker_kind`. No other module looks at a URL's scheme.

Redis over TLS is `rediss://`; RabbitMQ is `amqp://`, `amqps://` or `pyamqp://` (kombu's names
for the same transport). A Unix socket is no broker URL here: kombu names it `redis+socket://`
and redis-py `unix://`, and the workers' bulk take needs both to agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Final
from urllib.parse import urlsplit


class BrokerKind(StrEnum):
    """The broker a URL names; what the listener and workers do differs per kind."""

    REDIS = "redis"
    AMQP = "amqp"


BROKER_SCHEMES: Final[Mapping[str, BrokerKind]] = MappingProxyType(
    {
        "redis": BrokerKind.REDIS,
        "rediss": BrokerKind.REDIS,
        "amqp": BrokerKind.AMQP,
        "amqps": BrokerKind.AMQP,
        "pyamqp": BrokerKind.AMQP,
    }
)
"""URL scheme → broker kind: the one table."""

REDIS_URL_SCHEMES: Final = frozenset(("redis", "rediss", "unix"))
"""Schemes redis-py connects to, for the state Redis (REDIS_URL), which no kombu reads."""


def broker_kind(url: str) -> BrokerKind:
    """The kind of broker `url` names, or ValueError saying what a valid URL looks like."""
    kind = BROKER_SCHEMES.get(urlsplit(url.strip()).scheme)
    if kind is None:
        raise ValueError("must be redis://host:6379/0 or amqp://user:password@host:5672//")
    return kind


def check_redis_url(url: str) -> None:
    """ValueError unless redis-py can connect to `url` (redis://, rediss:// or unix://)."""
    if urlsplit(url.strip()).scheme not in REDIS_URL_SCHEMES:
        raise ValueError("must be redis://host:6379/0 (or rediss://, or unix:///path/redis.sock)")
