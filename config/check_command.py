"""`ha-ingestor check`: is everything ha-ingestor needs there, reachable and allowed?

Verifies, in order: the configuration (settings and the rules file), Home Assistant (a real
WebSocket login with the token), the broker, Redis, InfluxDB (including the right to write:
an empty write, which InfluxDB authorises but stores nothing for) and the data directory.
For each failure it prints what is wrong and how to fix it. Secrets never appear: URLs are
shown with their passwords masked, tokens not at all.

Each check lives with the adapter it exercises (listener/ha/check.py,
workers/commands/store_checks.py); this module, in config/ (the composition root), only composes
them and prints, importing them when the command runs.

Exit codes: 0 everything works, 1 something does not, 2 the settings are invalid.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from config.check_outcome import Outcome
from config.redaction import redact_url, scrub

if TYPE_CHECKING:
    from config.settings import Settings

__all__ = ["Outcome", "add_arguments", "run", "run_checks"]

Check = Callable[["Settings"], "Outcome | list[Outcome]"]
"""A check gives one outcome, or one per destination."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options: everything comes from the environment, as for the other commands."""


def run(_: argparse.Namespace) -> int:
    from config.settings import SettingsError, load_settings

    out = sys.stdout
    out.write("ha-ingestor check\n")
    try:
        settings = load_settings()
    except SettingsError as exc:
        _print(out, Outcome("configuration", False, str(exc), "set the variables named above"))
        return 2
    outcomes = run_checks(settings)
    secrets = settings.secrets()
    width = max([15, *(len(o.name) for o in outcomes)])
    for outcome in outcomes:
        _print(out, outcome, secrets, width)
    failed = sum(not o.ok for o in outcomes)
    out.write(
        "\nEverything works.\n"
        if not failed
        else f"\n{failed} problem{'s' if failed > 1 else ''} found: fix them and run "
        "`ha-ingestor check` again.\n"
    )
    return 1 if failed else 0


def checks() -> list[Check]:
    """Every check, in the order they are printed."""
    from listener.ha.check import check_home_assistant
    from workers.commands.store_checks import check_broker, check_destinations, check_redis

    return [
        check_configuration,
        check_home_assistant,
        check_broker,
        check_redis,
        check_destinations,
        check_data_dir,
    ]


def run_checks(settings: Settings) -> list[Outcome]:
    """Every check, each turning its own failures into an Outcome (none raises)."""
    outcomes = []
    for check in checks():
        try:
            found = check(settings)
            outcomes.extend(found if isinstance(found, list) else [found])
        except Exception as exc:  # noqa: BLE001 - a check's own bug must not hide the others
            name = check.__name__.removeprefix("check_").replace("_", " ")
            outcomes.append(
                Outcome(name, False, f"the check itself failed: {type(exc).__name__}: {exc}")
            )
    return outcomes


def _print(
    out: TextIO, outcome: Outcome, secrets: list[str] | None = None, width: int = 15
) -> None:
    def clean(text: str) -> str:
        return scrub(text, secrets or [])

    mark = "OK  " if outcome.ok else "FAIL"
    out.write(f"  {mark}  {outcome.name:<{width}} {clean(outcome.detail)}\n")
    if outcome.fix:
        out.write(f"        {'':<{width}} fix: {clean(outcome.fix)}\n")


# --- the checks of configuration itself -----------------------------------------------------------


def check_configuration(settings: Settings) -> Outcome:
    from config.destinations import load_destinations
    from core.rules import RulesError

    try:
        destinations = load_destinations(settings)
    except RulesError as exc:
        return Outcome("configuration", False, str(exc), "correct the rules file")
    rules = str(settings.ha_ingestor_config) if settings.ha_ingestor_config else "defaults"
    stores = [d.describe() for d in destinations.all]
    if not destinations.several:
        stores = [stores[0].removeprefix("default: ")]
    return Outcome(
        "configuration",
        True,
        f"broker {redact_url(settings.celery_broker_url.get_secret_value())}, "
        f"{', '.join(stores)}, rules: {rules}",
    )


def check_data_dir(settings: Settings) -> Outcome:
    """The spool, the beat schedule and Flower's state live here."""
    directory = settings.data_dir
    probe = directory / f".check-{uuid.uuid4().hex}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe.write_text("ok", encoding="utf-8")
        probe.unlink()
    except OSError as exc:
        return Outcome(
            "data directory",
            False,
            f"cannot write in {directory} ({exc.strerror})",
            "set DATA_DIR to a writable directory (the spool keeps events there)",
        )
    return Outcome("data directory", True, f"{directory.resolve()} is writable")
