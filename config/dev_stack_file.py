"""The settings of the stack `make run` started, where a command run beside it finds them.

`ha-ingestor dev` starts its own Redis, InfluxDB and simulator on ports of its choosing, and
gives them to its processes through their environment; a command run from another shell in
the same checkout (`status`, `check`, `dlq`, `import`) would otherwise read the default Redis
and report a stack that is not there. So the dev stack writes what it started with (URLs and
ports; no secret but its own throwaway simulator token) to `DATA_DIR/dev-stack.env` and removes
the file when it stops. A command finds it only when its own environment names no broker, and
reads it below the environment (config/settings.py `read_env_file`): a variable set in the
environment always wins.

The stack's PID is in the file, so a file left behind by a killed stack is recognised as such.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TextIO
from urllib.parse import urlsplit

from dotenv import dotenv_values

from config.redaction import redact_url
from config.settings import Settings, environment_names, read_env_file

FILE_NAME: Final = "dev-stack.env"
PID_VARIABLE: Final = "HA_INGESTOR_DEV_PID"
"""Not a setting (the settings ignore it): which process wrote the file."""
COMMANDS: Final = frozenset({"status", "check", "dlq", "import"})
"""The commands that talk to a running stack, and so read the dev stack's file."""
HOW_TO_REACH_A_STACK: Final = (
    "set CELERY_BROKER_URL (and REDIS_URL when state lives in another Redis) to the stack's, "
    "or start the development stack with `make run` in this checkout"
)
_BROKER_FIELDS: Final = ("celery_broker_url", "redis_url")
DEFAULT_BROKER: Final[str] = Settings.model_fields["celery_broker_url"].default.get_secret_value()


def stack_file(data_dir: Path) -> Path:
    """Where the dev stack with this data directory writes its settings."""
    return data_dir / FILE_NAME


def write_stack_file(path: Path, values: Mapping[str, str], pid: int) -> None:
    """Write the settings atomically, readable by their owner only (the simulator's token)."""
    lines = [
        "# Written by `ha-ingestor dev` (make run) and removed when it stops: commands run in",
        "# this checkout with no broker in their environment read it (docs/configuration.md).",
        f"{PID_VARIABLE}={pid}",
        *(f"{name}={_quoted(value)}" for name, value in sorted(values.items())),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{pid}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    partial.replace(path)


def _quoted(value: str) -> str:
    """A dotenv value that reads back as itself (single quotes take everything literally)."""
    if "'" in value or "\n" in value:
        raise ValueError(f"a dev stack setting cannot hold a quote or a newline: {value!r}")
    return f"'{value}'"


@dataclass(frozen=True)
class DevStack:
    """A dev stack's settings file, as a command beside it found it."""

    path: Path
    pid: int | None
    values: Mapping[str, str]

    def running(self) -> bool:
        """Whether the process that wrote the file still runs (else the file is stale)."""
        if self.pid is None:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def describe(self) -> str:
        """`the dev stack of make run (pid 12, .data/dev-stack.env): broker …, InfluxDB …`."""
        parts = [f"broker {redact_url(self.values.get('CELERY_BROKER_URL', '?'))}"]
        if "INFLUXDB_URL" in self.values:
            parts.append(f"InfluxDB {redact_url(self.values['INFLUXDB_URL'])}")
        if "HEALTH_PORT" in self.values:
            parts.append(f"status page http://127.0.0.1:{self.values['HEALTH_PORT']}/")
        return f"the dev stack of `make run` (pid {self.pid}, {self.path}): {', '.join(parts)}"


def broker_configured(environ: Mapping[str, str]) -> bool:
    """Whether the environment names a broker or a state Redis (then no stack file is read)."""
    given = {name.upper() for name, value in environ.items() if value}
    fields = Settings.model_fields
    return any(set(environment_names(f, fields[f])) & given for f in _BROKER_FIELDS)


def find_dev_stack(environ: Mapping[str, str]) -> DevStack | None:
    """The stack file in this checkout's data directory (DATA_DIR, else ./.data), if any."""
    upper = {name.upper(): value for name, value in environ.items()}
    data_dir = Path(upper.get("DATA_DIR") or Settings.model_fields["data_dir"].default)
    path = stack_file(data_dir)
    if not path.is_file():
        return None
    values = {name: value or "" for name, value in dotenv_values(path).items()}
    pid_text = values.pop(PID_VARIABLE, "")
    return DevStack(path, int(pid_text) if pid_text.isdigit() else None, values)


def broker_answers(url: str, timeout: float = 1.0) -> bool:
    """Whether anything accepts connections at this broker URL's host and port."""
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port or 6379), timeout=timeout).close()
    except OSError:
        return False
    return True


def reach_the_stack(
    command: str,
    environ: Mapping[str, str],
    err: TextIO,
    *,
    default_broker: str = DEFAULT_BROKER,
) -> None:
    """Before a command that talks to a stack, when the environment names no broker: read the
    dev stack's file if one runs here; either way, say on stderr which stack the command talks
    to, or, when nothing answers at the default broker, how to point it at one."""
    if broker_configured(environ):
        return
    prefix = f"ha-ingestor {command}"
    stack = find_dev_stack(environ)
    if stack is not None and stack.running():
        read_env_file(stack.path)
        err.write(f"{prefix}: talking to {stack.describe()}; set CELERY_BROKER_URL for another\n")
        return
    if stack is not None:
        err.write(
            f"{prefix}: ignoring {stack.path}: the `make run` that wrote it (pid {stack.pid}) "
            "no longer runs\n"
        )
    if broker_answers(default_broker):
        err.write(
            f"{prefix}: talking to the default broker {redact_url(default_broker)} (no "
            "CELERY_BROKER_URL set, and no `make run` runs in this checkout)\n"
        )
    else:
        err.write(
            f"{prefix}: nothing answers at {redact_url(default_broker)}, the default broker "
            "(CELERY_BROKER_URL and REDIS_URL are unset, and no `make run` runs in this "
            f"checkout): {HOW_TO_REACH_A_STACK}\n"
        )
