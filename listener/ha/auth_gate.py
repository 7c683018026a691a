"""After HA refused a token: no more logins with THAT token until an hour has passed.

HA's `ip_ban` bans an address after a few failed logins, so a refused token must not be tried
again and again — neither by our reconnect loop nor by a process manager restarting us
(docker's `restart: unless-stopped`, systemd's `Restart=`). The refusal is kept in a marker file
in DATA_DIR, so a restarted listener waits out the same hour. The rule is for the token HA
refused: a user who fixed `.env` and restarted, or replaced HA_TOKEN_FILE and sent SIGHUP, has
a different token, which is tried at once. To know which token was refused without keeping it,
the marker holds a salted BLAKE2b fingerprint of it (a fresh random salt per refusal, stored
beside it): never the token, and useless to look a token up with. A marker without a
fingerprint (written before fingerprints existed) holds back every token. SIGHUP also tries
the same token again at once: the user asked for it. A successful login removes the marker.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from listener.state_files import read_document, write_atomically

MARKER_NAME = "auth-refused.json"
RETRY_AFTER_S = 3600.0
"""At most one login try an hour with a token HA refused."""

SALT_BYTES = 16
"""BLAKE2b's largest salt."""


def token_fingerprint(token: str, salt: bytes) -> str:
    """Names a token without holding it: 16 bytes of BLAKE2b over it, salted, as hex."""
    digest = hashlib.blake2b(token.encode(), digest_size=16, salt=salt, person=b"ha-ingestor-auth")
    return digest.hexdigest()


@dataclass(frozen=True)
class Refusal:
    """The last refusal on record, as it applies to the token about to be tried."""

    refused_at: float
    retry_at: float
    """Unix time from which the refused token may be tried again."""
    same_token: bool
    """The token about to be tried is the refused one (or the marker cannot tell)."""

    def holds(self, now: float) -> bool:
        """True while this refusal keeps the token from being tried."""
        return self.same_token and self.retry_at > now


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

    def refusal(self, token: str) -> Refusal | None:
        """The refusal on record, judged for `token`; None when nothing (readable) was refused."""
        document = read_document(self.path)
        refused_at = document.get("refused_at")
        if isinstance(refused_at, bool) or not isinstance(refused_at, int | float):
            return None
        return Refusal(
            float(refused_at), float(refused_at) + self._retry_after, _same(document, token)
        )

    async def wait(self, token: str, stopping: asyncio.Event) -> None:
        """Return when `token` may be tried: not refused, its hour over, or `poke` was called."""
        while not stopping.is_set() and not self._poked.is_set():
            refusal = self.refusal(token)
            now = self._clock()
            if refusal is None or not refusal.holds(now):
                break
            waiters = {
                asyncio.ensure_future(stopping.wait()),
                asyncio.ensure_future(self._poked.wait()),
            }
            _, pending = await asyncio.wait(
                waiters,
                timeout=min(refusal.retry_at - now, 60.0),
                return_when=asyncio.FIRST_COMPLETED,
            )
            for waiter in pending:
                waiter.cancel()
        self._poked.clear()

    def poke(self) -> None:
        """Try again now (SIGHUP: the token may have been replaced)."""
        self._poked.set()

    def refused(self, token: str) -> None:
        """HA said auth_invalid to `token`: remember when, and which token, durably."""
        salt = os.urandom(SALT_BYTES)
        write_atomically(
            self.path,
            {
                "refused_at": self._clock(),
                "salt": salt.hex(),
                "token_fingerprint": token_fingerprint(token, salt),
            },
        )

    def accepted(self) -> None:
        """HA took the token: forget any refusal."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _same(document: dict[str, object], token: str) -> bool:
    """Whether the marker's fingerprint is `token`'s; True when it has none to compare."""
    salt, fingerprint = document.get("salt"), document.get("token_fingerprint")
    if not isinstance(salt, str) or not isinstance(fingerprint, str):
        return True
    try:
        salt_bytes = bytes.fromhex(salt)
    except ValueError:
        return True
    if len(salt_bytes) > SALT_BYTES:
        return True
    return hmac.compare_digest(token_fingerprint(token, salt_bytes), fingerprint)
