"""The auth gate: a refused token is tried at most once an hour, across restarts; another
token is tried at once, and the gate knows which without keeping it."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest

from listener.ha.auth_gate import RETRY_AFTER_S, AuthGate, token_fingerprint

REFUSED = "eyJhbGciOiJIUzI1NiJ9.refused-token-4242"
FIXED = "eyJhbGciOiJIUzI1NiJ9.fixed-token-7777"


def test_a_refusal_holds_logins_for_an_hour_across_instances(tmp_path: Path) -> None:
    now = [1_000_000.0]
    gate = AuthGate(tmp_path, clock=lambda: now[0])
    assert gate.refusal(REFUSED) is None
    gate.refused(REFUSED)
    restarted = AuthGate(tmp_path, clock=lambda: now[0])  # a new process reads the marker
    refusal = restarted.refusal(REFUSED)
    assert refusal is not None
    assert refusal.retry_at == 1_000_000.0 + RETRY_AFTER_S
    assert refusal.holds(now[0])
    assert refusal.holds(1_000_000.0 + RETRY_AFTER_S - 1)
    assert not refusal.holds(1_000_000.0 + RETRY_AFTER_S)
    restarted.accepted()
    assert gate.refusal(REFUSED) is None


def test_a_changed_token_is_not_held_by_the_refusal_of_another(tmp_path: Path) -> None:
    now = [1_000_000.0]
    AuthGate(tmp_path, clock=lambda: now[0]).refused(REFUSED)
    restarted = AuthGate(tmp_path, clock=lambda: now[0])
    other = restarted.refusal(FIXED)
    assert other is not None
    assert not other.same_token
    assert not other.holds(now[0])
    same = restarted.refusal(REFUSED)
    assert same is not None
    assert same.same_token

    async def waits() -> None:
        never = asyncio.Event()
        await asyncio.wait_for(restarted.wait(FIXED, never), 1)  # at once: no hour for it
        with pytest.raises(TimeoutError):  # the refused token still waits its hour
            await asyncio.wait_for(restarted.wait(REFUSED, never), 0.1)

    asyncio.run(waits())


def test_the_marker_names_the_token_without_holding_it(tmp_path: Path) -> None:
    gate = AuthGate(tmp_path)
    gate.refused(REFUSED)
    first = (tmp_path / "auth-refused.json").read_text(encoding="utf-8")
    for form in (REFUSED, REFUSED.encode().hex(), base64.b64encode(REFUSED.encode()).decode()):
        assert form not in first
    assert "refused-token" not in first
    gate.refused(REFUSED)
    second = json.loads((tmp_path / "auth-refused.json").read_text(encoding="utf-8"))
    # A fresh salt each time: the same token never gives the same fingerprint twice.
    assert second["token_fingerprint"] != json.loads(first)["token_fingerprint"]
    salt = bytes.fromhex(second["salt"])
    assert second["token_fingerprint"] == token_fingerprint(REFUSED, salt)
    assert token_fingerprint(FIXED, salt) != token_fingerprint(REFUSED, salt)
    assert len(second["token_fingerprint"]) == 32


def test_a_marker_without_a_fingerprint_holds_every_token(tmp_path: Path) -> None:
    """Written before fingerprints existed: it cannot tell which token, so it keeps the hour."""
    (tmp_path / "auth-refused.json").write_text('{"refused_at": 1000000.0}', encoding="utf-8")
    for token in (REFUSED, FIXED):
        refusal = AuthGate(tmp_path).refusal(token)
        assert refusal is not None
        assert refusal.same_token
        assert refusal.holds(1_000_000.0 + 60)
    (tmp_path / "auth-refused.json").write_text(
        '{"refused_at": 1000000.0, "salt": "not hex", "token_fingerprint": "ab"}',
        encoding="utf-8",
    )
    refusal = AuthGate(tmp_path).refusal(FIXED)
    assert refusal is not None
    assert refusal.same_token


def test_poke_and_stop_end_the_wait_and_a_garbled_marker_holds_nothing(tmp_path: Path) -> None:
    gate = AuthGate(tmp_path)
    gate.refused(REFUSED)

    async def waits() -> None:
        stopping = asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, gate.poke)
        await asyncio.wait_for(gate.wait(REFUSED, stopping), 2)
        asyncio.get_running_loop().call_later(0.05, stopping.set)
        await asyncio.wait_for(gate.wait(REFUSED, stopping), 2)

    asyncio.run(waits())
    (tmp_path / "auth-refused.json").write_text("{not json", encoding="utf-8")
    assert gate.refusal(REFUSED) is None
