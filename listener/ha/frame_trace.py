"""Every WebSocket frame to and from HA as a JSON line, for debugging a connection.

Free when off: tracing is a ClientConnection subclass that `HAClient` asks websockets for only
when a trace is set, so an untraced connection runs websockets' own `send`/`recv` untouched.
Each line holds wall-clock and monotonic time, direction, size in bytes and the frame, parsed
when it is JSON. Secrets never reach the file: every `access_token`, `password` and `token`
field, at any depth, is masked, then every known secret value is scrubbed from the line. The
file is rotated at a size cap (PATH → PATH.1 → … PATH.N, the oldest dropped).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterable, Iterable, Sequence
from pathlib import Path
from typing import IO, Any, Literal, overload

from websockets.asyncio.client import ClientConnection
from websockets.typing import Data, DataLike

from config.redaction import MASK, scrub
from core import json_codec

log = logging.getLogger(__name__)

REDACTED_FIELDS = frozenset({"access_token", "password", "token"})
Direction = Literal["in", "out"]


def redact(value: Any) -> Any:
    """A copy of a decoded JSON value with every secret-named field masked, at any depth."""
    if isinstance(value, dict):
        return {
            key: MASK if str(key).lower() in REDACTED_FIELDS else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


class FrameTrace:
    """An append-only JSON-lines file of frames, rotated at `max_bytes`, keeping `backups`."""

    def __init__(
        self, path: Path, max_bytes: int, backups: int, secrets: Sequence[str] = ()
    ) -> None:
        if max_bytes < 1 or backups < 0:
            raise ValueError("a frame trace needs max_bytes >= 1 and backups >= 0")
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.rotations = 0
        self._secrets = [s for s in secrets if s]
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] = path.open("ab")
        self._written = self._file.tell()

    def record(self, direction: Direction, frame: str | bytes | bytearray | memoryview) -> None:
        """Append one frame; a full file is rotated first (a frame is never split)."""
        raw = frame.encode() if isinstance(frame, str) else bytes(frame)
        try:
            body: Any = redact(json_codec.loads(raw))
        except ValueError:
            body = raw.decode("utf-8", errors="replace")
        entry = {
            "wall": round(time.time(), 6),
            "mono": round(time.monotonic(), 6),
            "dir": direction,
            "size": len(raw),
            "frame": body,
        }
        text = json_codec.dumps(entry).decode()
        line = (scrub(text, self._secrets) + "\n").encode()
        if self._written and self._written + len(line) > self.max_bytes:
            self._rotate()
        self._file.write(line)
        self._file.flush()  # a crash or SIGKILL keeps every frame written so far
        self._written += len(line)

    def close(self) -> None:
        self._file.close()

    def _rotate(self) -> None:
        self._file.close()
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        else:
            for n in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{n}")
                if older.exists():
                    older.replace(self.path.with_name(f"{self.path.name}.{n + 1}"))
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        self._file = self.path.open("ab")
        self._written = 0
        self.rotations += 1


def trace_files(path: Path) -> list[Path]:
    """A trace's files as the rotation leaves them (PATH.N … PATH.1, PATH), oldest first."""
    numbered: list[tuple[int, Path]] = []
    for candidate in path.parent.glob(f"{path.name}.*"):
        suffix = candidate.name.removeprefix(f"{path.name}.")
        if suffix.isdigit():
            numbered.append((int(suffix), candidate))
    ordered = [p for _, p in sorted(numbered, reverse=True)]
    return [*ordered, path] if path.exists() else ordered


def traced_connection(trace: FrameTrace) -> type[ClientConnection]:
    """A ClientConnection class whose every frame sent and received goes to `trace`."""

    class TracedConnection(ClientConnection):
        @overload
        async def recv(self, decode: Literal[True]) -> str: ...

        @overload
        async def recv(self, decode: Literal[False]) -> bytes: ...

        @overload
        async def recv(self, decode: bool | None = None) -> Data: ...

        async def recv(self, decode: bool | None = None) -> Data:
            frame = await super().recv(decode)
            trace.record("in", frame)
            return frame

        async def send(
            self,
            message: DataLike | Iterable[DataLike] | AsyncIterable[DataLike],
            *,
            text: bool | None = None,
        ) -> None:
            if isinstance(message, str | bytes | bytearray | memoryview):
                trace.record("out", message)
            await super().send(message, text=text)

    return TracedConnection
