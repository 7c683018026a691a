"""A Docker engine of the test's own: dockerd with a temporary data root, exec root and socket.

Why not the machine's Docker: there may be none, and a test must leave nothing behind. This
dockerd runs as root (it must) with `--iptables=false` (published ports still answer on
127.0.0.1 through docker-proxy) and `--bridge=none` (no `docker0`: compose's own networks are
all the stack uses, and builds run with `--network host`); its networks draw from a pool of its
own so that two engines on one machine never take the same subnet. `stop()` ends it by its PID
(its containers go with it), removes the bridges it created and its directories.

The client is Debian's docker.io CLI beside dockerd: a newer CLI elsewhere on PATH may lack the
buildx plugin that BuildKit builds (the Dockerfile's `RUN --mount`) need there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import BinaryIO

import pytest

from tests.helpers import wait_until

DOCKER_CLIENTS = ("/usr/bin/docker", "docker")


def _binary(name: str, package: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        pytest.fail(f"{name} is not installed: run `apt-get install {package}` "
                    "(`make test` does it)", pytrace=False)  # fmt: skip
    return found


def _links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True)
    return {line.split(":")[1].strip().split("@")[0] for line in out.stdout.splitlines()}


def _mounts_under(root: Path) -> list[str]:
    lines = Path("/proc/self/mounts").read_text().splitlines()
    points = [line.split()[1].replace("\\040", " ") for line in lines]
    return [p for p in points if p == str(root) or p.startswith(f"{root}/")]


class DockerEngine:
    """One dockerd under a temporary directory; `docker(...)` runs the CLI against it."""

    def __init__(self) -> None:
        if os.geteuid() != 0:
            pytest.fail("tests/docker starts its own dockerd, which needs root: run the tests "
                        "as root (as CI does) or leave them out with `-m 'not docker'`",
                        pytrace=False)  # fmt: skip
        self.dockerd = _binary("dockerd", "docker.io")
        self.client = next(c for c in (shutil.which(p) for p in DOCKER_CLIENTS) if c)
        # A short path: the socket's path must fit in 108 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="hai-dockerd-"))
        self.socket = self.root / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.process: subprocess.Popen[bytes] | None = None
        self._links_before: set[str] = set()

    def start(self) -> DockerEngine:
        self._links_before = _links()
        pool = 64 + os.getpid() % 128  # 10.64.0.0/16 … 10.191.0.0/16, split in /24s
        log = (self.root / "dockerd.log").open("wb")
        self.process = subprocess.Popen(
            [self.dockerd, f"--data-root={self.root / 'data'}", f"--exec-root={self.root / 'exec'}",
             f"--pidfile={self.root / 'dockerd.pid'}", f"-H={self.host}", "--iptables=false",
             "--bridge=none", f"--default-address-pool=base=10.{pool}.0.0/16,size=24"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        wait_until(self._answers, 60, 0.2, message=f"dockerd answering on {self.socket}")
        return self

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"dockerd exited ({self.process.returncode}):\n{self.log()}")
        return self.socket.exists() and self.docker("version", check=False).returncode == 0

    def env(self) -> dict[str, str]:
        """The environment for docker and docker-compose: this engine, BuildKit on."""
        return {**os.environ, "DOCKER_HOST": self.host, "DOCKER_BUILDKIT": "1"}

    def docker(
        self, *args: str, check: bool = True, timeout: float = 600, stdin: BinaryIO | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.client, *args], env=self.env(), capture_output=True, timeout=timeout,
            stdin=stdin, check=False,
        )  # fmt: skip
        done = subprocess.CompletedProcess(
            result.args,
            result.returncode,
            result.stdout.decode(errors="replace"),
            result.stderr.decode(errors="replace"),
        )
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done

    def log(self) -> str:
        path = self.root / "dockerd.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        """End dockerd by its PID (SIGTERM, then SIGKILL after 30 s); remove what it made."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._kill_leftover_shims()
        for link in _links() - self._links_before:
            if link.startswith(("br-", "veth", "docker")):
                subprocess.run(["ip", "link", "del", link], capture_output=True, check=False)
        # dockerd usually unmounts what it mounted there (overlays, its netns); not always.
        for mount in sorted(_mounts_under(self.root), key=len, reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True, check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def _kill_leftover_shims(self) -> None:
        """containerd and its shims run under our exec root; any left end with the daemon."""
        marker = str(self.root).encode()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if marker in cmdline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(proc.name), signal.SIGKILL)
