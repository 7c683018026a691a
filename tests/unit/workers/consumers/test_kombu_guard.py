"""The tripwire for the private kombu hooks of workers/consumers/broker_transport.py (issue 12)."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import kombu.transport
import pytest
from kombu.transport import redis as kombu_redis

from workers.consumers import broker_transport, kombu_guard
from workers.consumers.kombu_guard import IncompatibleKombu, check, incompatibilities


def test_the_installed_kombu_has_every_hook_the_transport_overrides() -> None:
    """Fails on an incompatible kombu: then fix broker_transport and the guard together."""
    assert incompatibilities() == []
    broker_transport.install()  # does not refuse


def test_every_private_name_the_transport_uses_is_guarded() -> None:
    """A new override or private read in broker_transport needs its line in the guard."""
    source = Path(broker_transport.__file__).read_text(encoding="utf-8")
    names = [*kombu_guard.METHODS, *kombu_guard.ATTRIBUTES, *kombu_guard.CLASS_ATTRIBUTES]
    guarded = {dotted.split(".")[1] for dotted in names}
    for name in ("_brpop_start", "_brpop_read", "_in_poll", "_vrestore_count",
                 "_flush_brpop_reauth", "_q_for_pri", "_queue_cycle"):  # fmt: skip
        assert name in source
        assert name in guarded, name


def _kombu_with(**changes: Any) -> types.ModuleType:
    """A copy of kombu.transport.redis whose classes differ as `changes` say."""
    module = types.ModuleType("fake_kombu_redis")
    channel = type("Channel", (kombu_redis.Channel,), changes.get("channel", {}))
    qos = type("QoS", (kombu_redis.QoS,), changes.get("qos", {}))
    module.Channel = channel  # type: ignore[attr-defined]
    module.QoS = qos  # type: ignore[attr-defined]
    return module


def test_a_changed_signature_a_missing_hook_and_another_release_are_refused() -> None:
    def _brpop_start(self: Any, timeout: Any = None, queues: Any = None) -> None: ...

    def __init__(self: Any, *args: Any) -> None:  # sets no _queue_cycle
        self.other = 1

    fake = _kombu_with(
        channel={"_brpop_start": _brpop_start, "_flush_brpop_reauth": None,
                 "__init__": __init__},
    )  # fmt: skip
    found = incompatibilities(redis_module=fake, version="5.8.0")
    assert found == [
        "kombu 5.8.0 is not 5.7.x",
        "kombu.transport.redis.Channel._brpop_start takes (self, timeout, queues), "
        "not (self, timeout)",
        "kombu.transport.redis.Channel._flush_brpop_reauth is missing",
        "kombu.transport.redis.Channel.__init__ no longer sets Channel._queue_cycle",
    ]
    with pytest.raises(IncompatibleKombu) as refused:
        check(redis_module=fake, transport_module=kombu.transport, version="5.8.0")
    text = str(refused.value)
    assert "Set WORKER_BULK_TAKE=true" in text
    assert "pip install 'kombu>=5.7,<5.8'" in text
