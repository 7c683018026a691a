"""The compose stack as a user runs it, plus the simulated Home Assistant, driven by the CLI.

The project directory is a temporary copy of what a user has in a checkout: the repository's
docker-compose.yml and deploy/ unchanged, and a `.env` made from `.env.example` the way
docs/deployment.md says (`cp .env.example .env`, then fill in). `compose(...)` is
`docker-compose -f docker-compose.yml -f compose.test.yml ARGS` there; Home Assistant is its
own compose project (homeassistant.yml) on a network the listener joins.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.docker.engine import DockerEngine
from tests.docker.images import HERE, REPO, Images

PROJECT = "hai"
HA_PROJECT = "hai-ha"
HA_NETWORK = "hai-homeassistant"
TOKEN = "compose-test-token-0123456789"
FLOWER_AUTH = ("admin", "compose-test-password")
APP_SERVICES = ("listener", "worker", "beat", "flower")
SERVICES = ("redis", "influxdb", *APP_SERVICES)
FILLED_IN = {
    "HA_URL": "http://homeassistant:8123",
    "HA_TOKEN": TOKEN,
    "FLOWER_BASIC_AUTH": ":".join(FLOWER_AUTH),
}


def get(url: str, auth: tuple[str, str] | None = None) -> tuple[int, bytes] | None:
    """(status, body), or None while nothing answers."""
    request = urllib.request.Request(url)
    if auth is not None:
        token = base64.b64encode(":".join(auth).encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=3) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return None


def env_from_example(example: str) -> str:
    """`.env.example` with what a user must fill in filled in (each key must be there)."""
    text = example
    for key, value in FILLED_IN.items():
        text, found = re.subn(rf"^{key}=.*$", f"{key}={value}", text, flags=re.M)
        assert found == 1, f".env.example has no {key}= line to fill in"
    return text


@dataclass
class Stack:
    engine: DockerEngine
    images: Images
    tmp: Path
    project_dir: Path = field(init=False)
    record_dir: Path = field(init=False)
    ha_token: str = TOKEN
    peak_memory: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.compose_binary = shutil.which("docker-compose")
        if self.compose_binary is None:
            pytest.fail("docker-compose is not installed: run `apt-get install docker-compose` "
                        "(`make test` does it)", pytrace=False)  # fmt: skip
        self.project_dir = self.tmp / "ha-ingestor"
        self.project_dir.mkdir()
        shutil.copy(REPO / "docker-compose.yml", self.project_dir)
        shutil.copytree(REPO / "deploy", self.project_dir / "deploy")
        example = (REPO / ".env.example").read_text(encoding="utf-8")
        (self.project_dir / ".env").write_text(env_from_example(example), encoding="utf-8")
        self.record_dir = self.tmp / "record"
        self.record_dir.mkdir()
        self.record_dir.chmod(0o777)  # the simulator runs as the image's uid 10001

    # --- commands ---------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        return {
            **self.engine.env(),
            "HAI_SERVERS_IMAGE": self.images.servers,
            "HAI_SIMULATOR_IMAGE": self.images.simulator,
            "HAI_HA_NETWORK": HA_NETWORK,
            "HA_TOKEN": self.ha_token,
            "SIM_RECORD_DIR": str(self.record_dir),
        }

    def _run(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        assert self.compose_binary is not None
        done = subprocess.run(
            [self.compose_binary, *argv], cwd=self.project_dir, env=self._env(),
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise AssertionError(f"docker-compose {' '.join(argv)} failed:\n{done.stderr[-4000:]}")
        return done

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """docker-compose on the user's files plus the test override, in the project copy."""
        files = ["-f", "docker-compose.yml", "-f", "deploy/docker-compose.limits.yml",
                 "-f", str(HERE / "compose.test.yml")]  # fmt: skip
        return self._run(["-p", PROJECT, *files, *args], timeout)

    def ha(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """docker-compose on the simulated Home Assistant's own project."""
        return self._run(["-p", HA_PROJECT, "-f", str(HERE / "homeassistant.yml"), *args], timeout)

    # --- looking inside -------------------------------------------------------------------------

    def container(self, service: str, project: str = PROJECT) -> str:
        """The id of a service's (first) container, running or not."""
        out = self.engine.docker(
            "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}",
            "--filter", f"label=com.docker.compose.service={service}",
        ).stdout.split()  # fmt: skip
        assert out, f"no container for {service}"
        return out[0]

    def inspect(self, service: str, project: str = PROJECT) -> dict[str, Any]:
        raw = self.engine.docker("inspect", self.container(service, project)).stdout
        data: dict[str, Any] = json.loads(raw)[0]
        return data

    def health(self, service: str) -> str:
        state = self.inspect(service)["State"]
        return str(state.get("Health", {}).get("Status") or state["Status"])

    def wait_healthy(
        self, services: tuple[str, ...], timeout: float, since: float | None = None
    ) -> dict[str, float]:
        """Seconds until each service was healthy, counted from `since` (monotonic) or now."""
        start, seen = since or time.monotonic(), dict[str, float]()
        deadline = time.monotonic() + timeout
        while len(seen) < len(services):
            for service in services:
                if service not in seen and self.health(service) == "healthy":
                    seen[service] = time.monotonic() - start
            if time.monotonic() > deadline:
                late = {s: self.health(s) for s in services if s not in seen}
                raise AssertionError(f"not healthy after {timeout:g} s: {late}\n{self.logs()}")
            time.sleep(0.5)
        return seen

    def ha_port(self) -> int:
        out = self.engine.docker("port", self.container("homeassistant", HA_PROJECT), "8123")
        return int(out.stdout.split()[0].rsplit(":", 1)[1])

    def signal_ha(self, signal: str) -> None:
        self.engine.docker("kill", "-s", signal, self.container("homeassistant", HA_PROJECT))

    def sent(self) -> list[dict[str, Any]]:
        path = self.record_dir / "sent.jsonl"
        if not path.exists():
            return []
        lines = path.read_text("utf-8").splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    def logs(self, tail: int = 40) -> str:
        try:
            return self.compose("logs", "--no-color", f"--tail={tail}", timeout=60).stdout
        except AssertionError as exc:
            return str(exc)

    def sample_memory(self, stop: threading.Event) -> None:
        """Until `stop`: the most each container used (MiB) into `peak_memory`, every ~2 s."""
        while not stop.is_set():
            with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                for service, mib in self.memory_mb().items():
                    self.peak_memory[service] = max(self.peak_memory.get(service, 0.0), mib)
            stop.wait(1)

    def memory_mb(self) -> dict[str, float]:
        """`docker stats --no-stream` of every running container, MiB by compose service."""
        out = self.engine.docker(
            "stats", "--no-stream", "--format", "{{.Name}}\t{{.MemUsage}}", timeout=30
        ).stdout  # fmt: skip
        figures = {}
        for line in out.splitlines():
            name, usage = line.split("\t")
            if not re.match(rf"({PROJECT}|{HA_PROJECT})_", name) or usage.startswith("--"):
                continue  # a container being created or removed
            used = usage.split("/")[0].strip()
            number, unit = re.match(r"([\d.]+)\s*([A-Za-z]+)", used).groups()  # type: ignore[union-attr]
            scale = {"B": 1 / 2**20, "KiB": 1 / 1024, "MiB": 1, "GiB": 1024}[unit]
            service = re.sub(rf"^({PROJECT}|{HA_PROJECT})_(.*)_\d+$", r"\2", name)
            figures[service] = float(number) * scale
        return figures
