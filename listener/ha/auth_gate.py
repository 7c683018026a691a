"""After HA refused the token: no more logins until the token changes or an hour has passed.

HA's `ip_ban` bans an address after a few failed logins, so a refused token must not be tried
again and again — neither by our reconnect loop nor by a process manager restarting us
(docker's `restart: unless-stopped`, systemd's `Restart=`). The time of the last refusal is
kept in a marker file in DATA_DIR, so a restarted listener waits out the same hour; SIGHUP
(with a new HA_TOKEN_FILE or HA_TOKEN) tries again at once. A successful login removes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

MARKER_NAME = "auth-refused.json"
RETRY_AFTER_S = 3600.0
"""At most one login try an hour with a token HA refused."""


class AuthGate:
    """Decides when the next login may be tried; the refusal survives restarts."""

    def __init__(
        self,
        data_dir: Path,
        *,
        retry_after: float = RETRY_AFTER_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = data_dir / MARKER_NAME
        self._retry_after = retry_after
        self._clock = clock
        self._poked = asyncio.Event()

    def retry_at(self) -> float | None:
        """Unix time from which a login may be tried again; None when nothing was refused."""
        try:
            refused_at = json.loads(self.path.read_text(encoding="utf-8"))["refused_at"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if isinstance(refused_at, bool) or not isinstance(refused_at, int | float):
            return None
        return float(refused_at) + self._retry_after

    async def wait(self, stopping: asyncio.Event) -> None:
        """Return when a login may be tried: no refusal, its hour is over, or `poke` was called."""
        while not stopping.is_set() and not self._poked.is_set():
            at = self.retry_at()
            now = self._clock()
            if at is None or at <= now:
                break
            waiters = {
                asyncio.ensure_future(stopping.wait()),
                asyncio.ensure_future(self._poked.wait()),
            }
            _, pending = await asyncio.wait(
                waiters, timeout=min(at - now, 60.0), return_when=asyncio.FIRST_COMPLETED
            )
            for waiter in pending:
                waiter.cancel()
        self._poked.clear()

    def poke(self) -> None:
        """Try again now (SIGHUP: the token may have been replaced)."""
        self._poked.set()

    def refused(self) -> None:
        """HA said auth_invalid: remember when, durably."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        with temporary.open("w", encoding="utf-8") as file:
            json.dump({"refused_at": self._clock()}, file)
            file.flush()
            os.fsync(file.fileno())
        temporary.replace(self.path)

    def accepted(self) -> None:
        """HA took the token: forget any refusal."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
