"""Every image the compose test uses, built here: Docker Hub cannot be reached from CI machines.

- base: Debian bookworm with python3 (3.11), made by debootstrap and `docker import`ed. The
  root file system is cached as a tarball outside the repository (CACHE), named by what goes
  into it; a missing or stale cache costs about a minute, never a failure.
- servers: redis-server, influxd 1.x and prometheus from Debian's packages on that base
  (servers.Dockerfile), in place of the images docker-compose.yml pulls.
- product: the repository's Dockerfile with BASE_IMAGE set to the base and the host's CA
  bundle as PIP_CA_BUNDLE, built as docs/deployment.md tells a user without Docker Hub (or
  behind a TLS-intercepting proxy) to.
- simulator: the product image plus devtools/, the HA simulator (simulator.Dockerfile).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.docker.engine import DockerEngine

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CACHE = Path(os.environ.get("HA_INGESTOR_TEST_CACHE", "/var/cache/ha-ingestor-test"))
SUITE = "bookworm"
DEBOOTSTRAP_ARGS = ("--variant=minbase", "--include=python3,python3-venv,ca-certificates")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PRODUCT_IMAGE = "ha-ingestor:latest"  # as docker-compose.yml names it
SIMULATOR_FILES = ("devtools/__init__.py", "devtools/simulate_command.py", "devtools/simulator")


@dataclass
class Images:
    base: str
    servers: str
    product: str
    simulator: str
    seconds: dict[str, float] = field(default_factory=dict)


def _architecture() -> str:
    out = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                         check=True)  # fmt: skip
    return out.stdout.strip()


def base_tarball() -> Path:
    """The cached root file system of the base image; made with debootstrap when missing."""
    arch = _architecture()
    recipe = json.dumps([SUITE, arch, DEBOOTSTRAP_ARGS, "python -> python3"])
    key = hashlib.sha256(recipe.encode()).hexdigest()[:12]
    tarball = CACHE / f"{SUITE}-python-{arch}-{key}.tar"
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two sessions at once: one debootstraps
        if tarball.exists():
            return tarball
        if shutil.which("debootstrap", path="/usr/sbin:/usr/bin:/sbin") is None:
            pytest.fail("debootstrap is not installed: run `apt-get install debootstrap` "
                        "(`make test` does it)", pytrace=False)  # fmt: skip
        for stale in CACHE.glob(f"{SUITE}-python-{arch}-*.tar"):
            stale.unlink()
        with tempfile.TemporaryDirectory(dir=CACHE, prefix="build-") as tmp:
            root = Path(tmp) / "root"
            done = subprocess.run(
                ["debootstrap", *DEBOOTSTRAP_ARGS, SUITE, str(root)],
                capture_output=True, text=True, timeout=900, check=False,
            )  # fmt: skip
            if done.returncode != 0:
                raise AssertionError(f"debootstrap failed (needs deb.debian.org):\n"
                                     f"{done.stdout[-3000:]}{done.stderr[-3000:]}")  # fmt: skip
            (root / "usr" / "bin" / "python").symlink_to("python3")
            partial = Path(tmp) / "rootfs.tar"
            subprocess.run(["tar", "-C", str(root), "-cf", str(partial), "."], check=True)
            os.replace(partial, tarball)
    return tarball


def _checkout_copy(target: Path) -> None:
    """The repository's files as a clone has them (tracked, or new and not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


@contextlib.contextmanager
def _timed(seconds: dict[str, float], name: str) -> Iterator[None]:
    start = time.monotonic()
    yield
    seconds[name] = time.monotonic() - start


def build_all(engine: DockerEngine) -> Images:
    seconds: dict[str, float] = {}
    with _timed(seconds, "base tarball (debootstrap unless cached)"):
        tarball = base_tarball()
    base = f"hai-test/base:{tarball.stem.rsplit('-', 1)[-1]}"
    with _timed(seconds, "base import"), tarball.open("rb") as stream:
        engine.docker("import", "-", base, stdin=stream)
    servers = "hai-test/servers:latest"
    with _timed(seconds, "servers"):
        engine.docker("build", "--network", "host", "--build-arg", f"BASE_IMAGE={base}",
                      "-f", str(HERE / "servers.Dockerfile"), "-t", servers, str(HERE))  # fmt: skip
    with _timed(seconds, "product"), tempfile.TemporaryDirectory() as context:
        # The commands of docs/deployment.md, in a copy of the checkout (the CA bundle must be
        # in the build context; the repository gets no file).
        _checkout_copy(Path(context))
        ca = []
        if HOST_CA_BUNDLE.exists():
            shutil.copy(HOST_CA_BUNDLE, Path(context) / "pip-ca.pem")
            ca = ["--build-arg", "PIP_CA_BUNDLE=pip-ca.pem"]
        engine.docker("build", "--network", "host", *ca, "--build-arg", f"BASE_IMAGE={base}",
                      "-t", PRODUCT_IMAGE, context)  # fmt: skip
    simulator = "hai-test/simulator:latest"
    with _timed(seconds, "simulator"), tempfile.TemporaryDirectory() as context:
        for name in SIMULATOR_FILES:
            source, target = REPO / name, Path(context) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(source, target)
        shutil.copy(HERE / "sim_entry.py", Path(context) / "sim_entry.py")
        engine.docker("build", "-f", str(HERE / "simulator.Dockerfile"), "-t", simulator,
                      context)  # fmt: skip
    return Images(base, servers, PRODUCT_IMAGE, simulator, seconds)
