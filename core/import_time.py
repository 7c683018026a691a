"""`ha-ingestor import --since/--until WHEN`: the moments WHEN names, and the range they make.

WHEN is an ISO date (`2024-03-01`, midnight UTC), an ISO date and time (`2024-03-01T12:00`,
UTC unless it names its offset), or an age before `now` in weeks, days, hours or minutes:
`2w`, `30d`, `12h`, `90m`, `1.5d`. Pure: the clock is the caller's, `now` is passed in.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Final

_AGE: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([dhmw])\s*$")
_UNITS: Final = {"w": 7 * 86_400, "d": 86_400, "h": 3_600, "m": 60}


class BadWhen(ValueError):
    """A WHEN that cannot be used; the text says what would be valid."""


def parse_when(text: str, now: datetime, *, option: str = "--since") -> datetime:
    """The moment WHEN names (aware, UTC); BadWhen when it is not one or lies in the future."""
    match = _AGE.match(text)
    if match:
        moment = now - timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    else:
        try:
            moment = datetime.fromisoformat(text.strip())
        except ValueError:
            raise BadWhen(
                f"{option} {text!r} is not a time: give an ISO date (2024-03-01), an ISO date "
                "and time (2024-03-01T12:00:00+01:00) or an age such as 30d, 12h or 90m"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    if moment > now:
        raise BadWhen(
            f"{option} {text!r} is in the future ({moment.isoformat()}, now is "
            f"{now.astimezone(UTC).isoformat()}): HA has recorded nothing there yet; give a "
            "time in the past"
        )
    return moment


def import_range(since: str, until: str | None, now: datetime) -> tuple[datetime, datetime]:
    """[since, until) of an import; until defaults to now. BadWhen says what is wrong."""
    start = parse_when(since, now, option="--since")
    end = now if until is None else parse_when(until, now, option="--until")
    if end <= start:
        raise BadWhen(
            f"--until {until!r} ({end.isoformat()}) is not after --since {since!r} "
            f"({start.isoformat()}): give an --until later than --since, or leave it out "
            "to import up to now"
        )
    return start, end
