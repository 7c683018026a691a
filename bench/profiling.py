"""`--profile DIR`: py-spy samples of the listener and the ingest worker while they work.

Non-blocking sampling (the target is never paused, so HA's pending limit is not tripped by the
profiler); collapsed stacks go to DIR/<name>.txt (flamegraph.pl or speedscope read them), and
the frames that take the most time are printed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench.context import Context

PY_SPY = Path(sys.executable).parent / "py-spy"


def attach(ctx: Context, pid: int, name: str, seconds: float) -> subprocess.Popen[bytes] | None:
    """Start sampling `pid` for `seconds` if --profile was given."""
    if ctx.profile_dir is None:
        return None
    if not PY_SPY.exists():
        raise RuntimeError(f"{PY_SPY} is missing: install the dev extra (pip install -e '.[dev]')")
    ctx.profile_dir.mkdir(parents=True, exist_ok=True)
    out = ctx.profile_dir / f"{name}.txt"
    argv = [
        str(PY_SPY), "record", "--nonblocking", "--threads", "-r", "200", "-f", "raw",
        "-d", str(max(1, round(seconds))), "-o", str(out), "-p", str(pid),
    ]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize(ctx: Context, spy: subprocess.Popen[bytes] | None, name: str, top: int = 12) -> None:
    """Wait for the sampler and print the frames with the most samples (inclusive)."""
    if spy is None or ctx.profile_dir is None:
        return
    try:
        spy.wait(120)
    except subprocess.TimeoutExpired:
        spy.kill()
        return
    path = ctx.profile_dir / f"{name}.txt"
    if not path.exists():
        ctx.say(f"profile {name}: py-spy wrote nothing (is ptrace allowed here?)")
        return
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        frames = [
            re.sub(r":\d+\)$", ")", re.sub(r" \(.*/(site-packages|main)/", " (", f))
            for f in stack.split(";")
        ]
        for frame in set(frames):
            inclusive[frame] += int(count)
        own[frames[-1]] += int(count)
    ours = [
        (f, n)
        for f, n in inclusive.most_common()
        if any(p in f for p in ("(listener/", "(workers/", "(config/", "kombu", "redis/", "json"))
    ][:top]
    ctx.say(f"profile {name} ({total} samples, {path}):")
    for frame, samples in ours:
        print(f"    {100 * samples / max(1, total):5.1f}%  {frame}", flush=True)
    # Where the time is spent, whoever called: the per-wakeup costs (waits, socket calls) show
    # here, where the inclusive list above shows the callers.
    print("    self time:", flush=True)
    for frame, samples in own.most_common(top):
        print(f"    {100 * samples / max(1, total):5.1f}%  {frame}", flush=True)
