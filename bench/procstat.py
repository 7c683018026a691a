"""CPU time and memory of processes, read from /proc (no psutil): what the figures are made of."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int, *, with_reaped_children: bool = True) -> float:
    """User + system CPU seconds of a process (plus its waited-for children's, by default)."""
    try:
        fields = _stat_fields(pid)
    except (OSError, ValueError):
        return 0.0
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    total = utime + stime + ((cutime + cstime) if with_reaped_children else 0)
    return total / _TICKS


def children(pid: int) -> list[int]:
    """Direct children of a process (every thread's list)."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{tid}/children").read_text()
        except OSError:
            continue
        out.extend(int(c) for c in text.split())
    return out


def tree(pid: int) -> list[int]:
    """The process and all its descendants."""
    pids, pending = [], [pid]
    while pending:
        current = pending.pop()
        pids.append(current)
        pending.extend(children(current))
    return pids


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and every live descendant (reaped ones are in cutime)."""
    return sum(cpu_seconds(p) for p in tree(pid))


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def context_switches(pid: int) -> int:
    """Voluntary and forced context switches of every live thread of a process: how often it
    was woken (each costs CPU in the kernel, the per-wakeup cost CPU time alone hides)."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tasks:
        try:
            lines = Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines()
        except OSError:
            continue
        total += sum(int(line.split()[1]) for line in lines if "ctxt_switches:" in line)
    return total


def rss_mb(pid: int) -> float:
    return _status_kb(pid, "VmRSS:") / 1024


def peak_rss_mb(pid: int) -> float:
    """The kernel's high-water mark of the resident set (VmHWM): exact, no sampling gaps."""
    return _status_kb(pid, "VmHWM:") / 1024


class PeakWatcher:
    """Keeps the peak RSS of every process in some trees, sampled until stopped.

    VmHWM is exact but dies with the process; sampling also catches short-lived pool children.
    """

    def __init__(self, roots: Callable[[], Iterable[tuple[str, int]]], interval: float = 0.25):
        self._roots = roots
        self._interval = interval
        self.peaks: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)

    def start(self) -> PeakWatcher:
        self._thread.start()
        return self

    def sample(self) -> None:
        for name, root in list(self._roots()):
            for index, pid in enumerate(tree(root)):
                label = name if index == 0 else f"{name}/child-{pid}"
                peak = max(peak_rss_mb(pid), rss_mb(pid))
                if peak > self.peaks.get(label, 0.0):
                    self.peaks[label] = peak

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()

    def stop(self) -> dict[str, float]:
        self.sample()
        self._stop.set()
        self._thread.join(5)
        return dict(self.peaks)
