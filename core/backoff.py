"""Capped exponential backoff with equal jitter, shared by reconnects and write retries.

Equal jitter: each delay is drawn from the upper half of its step, [step/2, step], so a retry
never comes at once (full jitter, [0, step], can draw a delay near zero and hammer a server that
just failed) while clients that failed together still spread out.

A generator of delays is a seam: tests pass short ones instead of patching sleeps.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator


def exponential_backoff(
    initial: float = 0.5,
    factor: float = 2.0,
    cap: float = 60.0,
    jitter: Callable[[float], float] = lambda upper: random.uniform(upper / 2, upper),
) -> Iterator[float]:
    """Yield delays for steps initial, initial*factor, … capped at `cap`, each jittered into
    [step/2, step] (never zero)."""
    delay = initial
    while True:
        yield jitter(min(delay, cap))
        delay = min(delay * factor, cap)


BackoffFactory = Callable[[], Iterator[float]]
