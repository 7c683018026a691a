"""The auth gate: a refused token is tried at most once an hour, across restarts."""

from __future__ import annotations

import asyncio
from pathlib import Path

from listener.ha.auth_gate import RETRY_AFTER_S, AuthGate


def test_a_refusal_holds_logins_for_an_hour_across_instances(tmp_path: Path) -> None:
    now = [1_000_000.0]
    gate = AuthGate(tmp_path, clock=lambda: now[0])
    assert gate.retry_at() is None
    gate.refused()
    restarted = AuthGate(tmp_path, clock=lambda: now[0])  # a new process reads the marker
    assert restarted.retry_at() == 1_000_000.0 + RETRY_AFTER_S
    restarted.accepted()
    assert gate.retry_at() is None


def test_poke_and_stop_end_the_wait_and_a_garbled_marker_holds_nothing(tmp_path: Path) -> None:
    gate = AuthGate(tmp_path)
    gate.refused()

    async def waits() -> None:
        stopping = asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, gate.poke)
        await asyncio.wait_for(gate.wait(stopping), 2)
        asyncio.get_running_loop().call_later(0.05, stopping.set)
        await asyncio.wait_for(gate.wait(stopping), 2)

    asyncio.run(waits())
    (tmp_path / "auth-refused.json").write_text("{not json", encoding="utf-8")
    assert gate.retry_at() is None
