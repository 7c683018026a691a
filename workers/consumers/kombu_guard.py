"""The version guard of workers/consumers/broker_transport.py: the private kombu hooks it relies on.

Why (issue 12). With WORKER_BULK_TAKE=false the workers run kombu's Redis transport with the
reliable take of workers/consumers/broker_transport.py, which overrides and reads kombu internals
that kombu may change in any release. A silent change would lose messages or crash-loop the worker;
so before installing it the worker checks that each hook still exists with the parameters it
was written against (kombu 5.7), and refuses to start, saying what to do, if one does not.
The default (WORKER_BULK_TAKE=true, workers/consumers/bulk_consumer.py) uses none of them.
tests/unit/workers/consumers/test_kombu_guard.py is the tripwire: it fails on an incompatible kombu.
"""

from __future__ import annotations

import inspect
from types import ModuleType
from typing import Any

import kombu
import kombu.transport
from kombu.transport import redis as kombu_redis

TESTED = (5, 7)
"""The kombu minor release the hooks were written and tested against (pyproject pins it)."""

METHODS: dict[str, tuple[str, ...]] = {
    "QoS.append": ("self", "message", "delivery_tag"),
    "QoS.restore_visible": ("self", "start", "num", "interval"),
    "QoS.pipe_or_acquire": ("self", "pipe", "client"),
    "Channel.basic_consume": ("self", "queue", "*args", "**kwargs"),
    "Channel.basic_cancel": ("self", "consumer_tag"),
    "Channel.close": ("self",),
    "Channel._brpop_start": ("self", "timeout"),
    "Channel._brpop_read": ("self", "**options"),
    "Channel._flush_brpop_reauth": ("self",),
    "Channel._q_for_pri": ("self", "queue", "pri"),
    "Channel.conn_or_acquire": ("self", "client"),
}
"""Every kombu method broker_transport overrides or calls, with its parameters."""

ATTRIBUTES: dict[str, str] = {
    "QoS._vrestore_count": "QoS.__init__",
    "Channel._queue_cycle": "Channel.__init__",
}
"""Instance attributes broker_transport reads, and the kombu method that sets them."""

CLASS_ATTRIBUTES = ("Channel._in_poll", "Channel.client", "Channel.priority_steps")


def _parameters(function: Any) -> tuple[str, ...]:
    names = []
    for p in inspect.signature(function).parameters.values():
        prefix = "*" if p.kind is p.VAR_POSITIONAL else "**" if p.kind is p.VAR_KEYWORD else ""
        names.append(prefix + p.name)
    return tuple(names)


def incompatibilities(
    redis_module: ModuleType = kombu_redis,
    transport_module: ModuleType = kombu.transport,
    version: str = kombu.__version__,
) -> list[str]:
    """What differs from the kombu broker_transport was written for; empty when compatible."""
    found: list[str] = []
    release = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
    if release != TESTED:
        found.append(f"kombu {version} is not {TESTED[0]}.{TESTED[1]}.x")

    def lookup(dotted: str) -> Any:
        owner, name = dotted.split(".")
        return getattr(getattr(redis_module, owner, None), name, None)

    for dotted, expected in METHODS.items():
        method = lookup(dotted)
        if not callable(method):
            found.append(f"kombu.transport.redis.{dotted} is missing")
        elif (actual := _parameters(method)) != expected:
            found.append(
                f"kombu.transport.redis.{dotted} takes ({', '.join(actual)}), "
                f"not ({', '.join(expected)})"
            )
    for dotted, setter in ATTRIBUTES.items():
        code = getattr(lookup(setter), "__code__", None)
        if code is None or dotted.split(".")[1] not in code.co_names:
            found.append(f"kombu.transport.redis.{setter} no longer sets {dotted}")
    for dotted in CLASS_ATTRIBUTES:
        owner, name = dotted.split(".")
        if not hasattr(getattr(redis_module, owner, None), name):
            found.append(f"kombu.transport.redis.{dotted} is missing")
    for name in ("TRANSPORT_ALIASES", "_transport_cache"):
        if not isinstance(getattr(transport_module, name, None), dict):
            found.append(f"kombu.transport.{name} is not a dict any more")
    return found


class IncompatibleKombu(RuntimeError):
    """The installed kombu is not the one workers/consumers/broker_transport.py can extend
    safely."""


def check(**where: Any) -> None:
    """IncompatibleKombu, with every difference and what to do, unless the hooks are there."""
    found = incompatibilities(**where)
    if found:
        raise IncompatibleKombu(
            "WORKER_BULK_TAKE=false runs kombu's Redis transport with private hooks written "
            f"for kombu {TESTED[0]}.{TESTED[1]}, and the installed kombu differs: "
            + "; ".join(found)
            + ". Set WORKER_BULK_TAKE=true (the default, which uses no kombu internals) or "
            f"install kombu {TESTED[0]}.{TESTED[1]}.x: "
            f"pip install 'kombu>={TESTED[0]}.{TESTED[1]},<{TESTED[0]}.{TESTED[1] + 1}'"
        )
