"""Hosts of a test's own: network namespaces on one private LAN, built and torn down by the test.

Each host is a namespace with one interface, `eth0`, an address on 10.231.0.0/24 and its own
loopback; a fifth namespace holds nothing but the bridge (the LAN's switch) that every host's
veth pair plugs into. Nothing is added to the machine's own namespace: every veth end is
created directly inside its namespace, so the test's traffic never leaves what it built, and
addresses and ports (6379, 8086, ... the real defaults) cannot clash with the machine's.

Processes run on a host with `ip netns exec NAME`, which execs the command (the PID is the
process's own, to signal). The test process itself reaches a host's servers from `inside()`,
which moves only the calling thread into the namespace: sockets made there stay there, and a
thread started there (the simulator's) lives there.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

_CLONE_NEWNET = 0x40000000
_LAN = "10.231.0"
_NETNS_DIR = "/run/netns"
_libc = ctypes.CDLL(None, use_errno=True)
_PID = re.compile(r"pid=(\d+)")


class SandboxUnavailable(RuntimeError):
    """Network namespaces cannot be made here; the message says what is needed."""


def _ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns into a network namespace failed: {os.strerror(errno)}")


@dataclass(frozen=True)
class Host:
    """One namespace standing for one machine: its name, its address on the LAN."""

    netns: str
    address: str

    def argv(self, argv: Sequence[str]) -> list[str]:
        """argv run on this host."""
        return ["ip", "netns", "exec", self.netns, *argv]

    @contextlib.contextmanager
    def inside(self) -> Iterator[None]:
        """Run the calling thread on this host until the block ends (sockets made here stay)."""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            target = os.open(f"{_NETNS_DIR}/{self.netns}", os.O_RDONLY)
            try:
                _setns(target)
                try:
                    yield
                finally:
                    _setns(home)
            finally:
                os.close(target)
        finally:
            os.close(home)

    def pids(self) -> list[int]:
        """Every process running on this host (never the test's own, whose threads visit)."""
        pids = [int(pid) for pid in _ip("netns", "pids", self.netns).split()]
        return [pid for pid in pids if pid != os.getpid()]

    def sockets(self, state: str) -> list[tuple[int, tuple[str, int], tuple[str, int]]]:
        """(pid, local address and port, peer address and port) of each TCP socket on this host
        in that state (`established`, `listening`)."""
        out = _ip("netns", "exec", self.netns, "ss", "-Htnp", "state", state)
        found = []
        for line in out.splitlines():
            local, peer = (_endpoint(text) for text in line.split()[2:4])
            found += [(int(pid), local, peer) for pid in _PID.findall(line)]
        return found


def _endpoint(text: str) -> tuple[str, int]:
    address, port = text.rsplit(":", 1)
    return address, 0 if port == "*" else int(port)


class Sandbox:
    """Hosts on one LAN, each added by `host()`, all removed by `close()` (run it in finally)."""

    def __init__(self) -> None:
        if os.geteuid() != 0:
            raise SandboxUnavailable(
                "network namespaces need root: run this test as root "
                "(sudo .venv/bin/pytest tests/faults/test_several_hosts.py)"
            )
        if shutil.which("ip") is None or shutil.which("ss") is None:
            raise SandboxUnavailable(
                "the ip and ss commands are missing: sudo apt-get install -y iproute2"
            )
        self.tag = uuid.uuid4().hex[:6]
        self.switch = f"hai{self.tag}-lan"
        self.hosts: list[Host] = []
        self._ports: list[str] = []
        _ip("netns", "add", self.switch)
        try:
            _ip("-n", self.switch, "link", "add", "lan", "type", "bridge")
            _ip("-n", self.switch, "link", "set", "lan", "up")
        except RuntimeError:
            _ip("netns", "del", self.switch)
            raise

    def host(self, role: str) -> Host:
        """A new host on the LAN, with the next free address."""
        host = Host(f"hai{self.tag}-{role}", f"{_LAN}.{len(self.hosts) + 1}")
        _ip("netns", "add", host.netns)
        self.hosts.append(host)
        port = f"to-{len(self.hosts)}"
        _ip("link", "add", "eth0", "netns", host.netns, "type", "veth",
            "peer", "name", port, "netns", self.switch)  # fmt: skip
        self._ports.append(port)
        _ip("-n", self.switch, "link", "set", port, "master", "lan", "up")
        _ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
        _ip("-n", host.netns, "link", "set", "eth0", "up")
        _ip("-n", host.netns, "link", "set", "lo", "up")
        return host

    def close(self) -> None:
        """SIGKILL whatever still runs on a host (only the test's processes run there), then
        delete every link and namespace this sandbox added; every step is tried, the first
        failure is raised after the others."""
        failures: list[Exception] = []
        steps: list[tuple[str, ...]] = [("-n", self.switch, "link", "del", p) for p in self._ports]
        steps.append(("-n", self.switch, "link", "del", "lan"))
        steps += [("netns", "del", host.netns) for host in self.hosts]
        steps.append(("netns", "del", self.switch))
        for host in self.hosts:
            with contextlib.suppress(RuntimeError):
                for pid in host.pids():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        for step in steps:
            try:
                _ip(*step)
            except RuntimeError as exc:
                failures.append(exc)
        if failures:
            raise failures[0]

    def leftovers(self) -> list[str]:
        """Namespaces of this sandbox still present (none after close())."""
        return [name for name in os.listdir(_NETNS_DIR) if name.startswith(f"hai{self.tag}-")]
