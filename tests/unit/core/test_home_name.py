"""A home's name: made key-safe from HA's location name, or refused with what would be valid."""

from __future__ import annotations

import pytest

from core.home_name import (
    FALLBACK,
    MAX_LENGTH,
    home_name_problem,
    is_home_name,
    key_safe,
    provisional_name,
)


@pytest.mark.parametrize(
    ("location", "name"),
    [
        ("Simulated Home", "simulated_home"),
        ("Holiday-Home", "holiday-home"),
        ("  Chez Zoë & Léa  ", "chez_zoe_lea"),
        ("Home #2", "home_2"),
        ("__Lab__", "lab"),
        ("Ферма", FALLBACK),
        ("", FALLBACK),
        ("!!!", FALLBACK),
        ("a" * 100, "a" * MAX_LENGTH),
    ],
)
def test_a_location_name_is_made_key_safe(location: str, name: str) -> None:
    assert key_safe(location) == name
    assert is_home_name(key_safe(location))


@pytest.mark.parametrize("name", ["home", "holiday_home", "lab-3", "0", "a" * MAX_LENGTH])
def test_valid_names_pass(name: str) -> None:
    assert is_home_name(name)
    assert home_name_problem(name) is None


@pytest.mark.parametrize(
    ("name", "suggested"),
    [
        ("Holiday Home", "holiday_home"),
        ("home:1", "home_1"),
        ("_hidden", "hidden"),
        ("a" * (MAX_LENGTH + 1), "a" * MAX_LENGTH),
        ("", FALLBACK),
    ],
)
def test_a_bad_name_is_refused_saying_what_would_be_valid(name: str, suggested: str) -> None:
    assert not is_home_name(name)
    problem = home_name_problem(name)
    assert problem is not None
    assert "lower-case letters, digits, - and _" in problem
    assert repr(suggested) in problem


def test_a_listener_not_yet_named_reports_under_a_provisional_name_of_its_own() -> None:
    name = provisional_name("Pi-4.local", 4242)
    assert name == "unnamed-pi-4_local-4242"
    assert is_home_name(name)
    assert provisional_name("Pi-4.local", 4243) != name, "two such listeners stay apart"
    assert is_home_name(provisional_name("x" * 200, 1)), "a long host name is cut to fit"
