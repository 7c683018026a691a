"""The broker kind is decided once, from one table (config/broker_kind.py), and carried by the
settings; nothing else in the product looks at a broker URL's scheme."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from config.broker_kind import BrokerKind, broker_kind, check_redis_url
from config.settings import SettingsError, load_settings

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("redis://127.0.0.1:6379/0", BrokerKind.REDIS),
        ("rediss://:pw@redis.example:6380/1", BrokerKind.REDIS),
        ("amqp://guest:guest@127.0.0.1:5672//", BrokerKind.AMQP),
        ("amqps://u:p@rabbit:5671/vhost", BrokerKind.AMQP),
        ("pyamqp://guest@127.0.0.1//", BrokerKind.AMQP),
        ("  redis://127.0.0.1/0  ", BrokerKind.REDIS),
    ],
)
def test_each_scheme_names_one_kind(url: str, kind: BrokerKind) -> None:
    assert broker_kind(url) is kind


@pytest.mark.parametrize(
    "url", ["unix:///run/redis.sock", "sqs://", "http://127.0.0.1:6379", "127.0.0.1:6379", ""]
)
def test_other_urls_are_refused_with_what_a_valid_one_looks_like(url: str) -> None:
    with pytest.raises(ValueError, match=r"redis://host:6379/0 or amqp://"):
        broker_kind(url)


def test_the_state_redis_may_be_a_unix_socket_but_not_rabbitmq() -> None:
    check_redis_url("unix:///run/redis/redis.sock")
    check_redis_url("rediss://127.0.0.1:6380/0")
    with pytest.raises(ValueError, match="redis://host:6379/0"):
        check_redis_url("amqp://guest@127.0.0.1//")


def test_the_settings_carry_the_kind() -> None:
    redis_settings = load_settings(celery_broker_url="redis://127.0.0.1:6379/0")
    assert redis_settings.broker_kind is BrokerKind.REDIS
    amqp_settings = load_settings(
        celery_broker_url="amqp://guest:guest@127.0.0.1:5672//",
        redis_url="redis://127.0.0.1:6379/0",
    )
    assert amqp_settings.broker_kind is BrokerKind.AMQP


def test_a_bad_broker_url_is_one_clear_line_without_the_password() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(celery_broker_url="unix://:s3cret@/run/redis.sock")
    assert "CELERY_BROKER_URL: must be redis://host:6379/0 or amqp://" in str(caught.value)
    assert "s3cret" not in str(caught.value)


SCHEME_CHECK = re.compile(r"""["'](redis|rediss|amqp|amqps|pyamqp|unix)(://)?["']""")


def test_no_other_product_module_looks_at_a_broker_scheme() -> None:
    offenders = []
    for package in ("core", "config", "listener", "workers"):
        for path in sorted((REPO / package).rglob("*.py")):
            if path == REPO / "config" / "broker_kind.py":
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if SCHEME_CHECK.search(line):
                    offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert offenders == []
