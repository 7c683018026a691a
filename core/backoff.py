"""Capped exponential backoff with full jitter, shared by reconnects and write retries.

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
    """Yield delays initial, initial*factor, … capped at `cap`, each jittered (never zero)."""
    delay = initial
    while True:
        yield jitter(min(delay, cap))
        delay = min(delay * factor, cap)


BackoffFactory = Callable[[], Iterator[float]]
