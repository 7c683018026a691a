"""A home's name: what tells one Home Assistant from another in Redis keys and in points.

Several listeners (one per HA) may share one broker, one Redis and one pool of workers; each
home's name becomes part of Redis keys (`<prefix>home:<name>:`) and, with INSTANCE_TAG, the
`instance` tag of its points. So a name is key-safe: lower-case letters, digits, `-` and `_`,
starting with a letter or digit. HA_INSTANCE sets it; unset, it is made from HA's own
`location_name` ("Simulated Home" → "simulated_home").
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

MAX_LENGTH: Final = 64
"""Long enough for any location name a person types; short enough for a tag and a key."""

FALLBACK: Final = "home"
"""The name when HA's location name has nothing key-safe in it (empty, or only symbols)."""

VALID_NAME: Final = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
WHAT_IS_VALID: Final = (
    f"lower-case letters, digits, - and _ (starting with a letter or digit, at most "
    f"{MAX_LENGTH} characters), e.g. simulated_home or holiday-home"
)
_RUNS_OF_OTHERS: Final = re.compile(r"[^a-z0-9_-]+")

PROVISIONAL_PREFIX: Final = "unnamed-"
"""How a listener's provisional name begins (`provisional_name`)."""


def is_home_name(name: str) -> bool:
    """Whether `name` can be used as it is (HA_INSTANCE, a remembered name)."""
    return VALID_NAME.fullmatch(name) is not None


def home_name_problem(name: str) -> str | None:
    """Why `name` is no valid home name, in words that say what would be; None when it is."""
    if is_home_name(name):
        return None
    suggestion = key_safe(name)
    return f"{name!r} is not a valid home name: use {WHAT_IS_VALID} (say {suggestion!r})"


def key_safe(text: str) -> str:
    """A valid home name made from any text (HA's `location_name`): accents dropped, lower
    case, every run of other characters one `_`, trimmed; FALLBACK when nothing is left."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    name = _RUNS_OF_OTHERS.sub("_", folded.lower()).strip("_-")[:MAX_LENGTH].strip("_-")
    return name if is_home_name(name) else FALLBACK


def provisional_name(host: str, pid: int) -> str:
    """The name a listener reports under before it knows its home's (its very first start,
    HA_INSTANCE unset, HA not logged into yet): `unnamed-<host>-<pid>`, key-safe, so two such
    listeners on one Redis stay apart and a person can tell which process it is. Once named,
    the listener drops it (its state and its entry among the homes)."""
    return key_safe(f"{PROVISIONAL_PREFIX}{host}-{pid}")
