"""A simulated home, as pure data: entities, their states, and the events HA fires for them.

No I/O and no clock: the caller passes the time of every change, so the same seed and the same
times give the same events. The shapes follow what a real HA 2024.3 sends (see
`tests/fixtures/`): states and `state_changed` events, registries, and the compressed
format of `history/history_during_period`; the floor and label registries (and the areas'
`floor_id` and `labels`) follow HA 2024.4's source (`tests/fixtures/floors_labels_2024_4.jsonl`).
"""

from __future__ import annotations

import bisect
import colorsys
import json
import random
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Final, Literal, NamedTuple

JSON = dict[str, Any]

UNAVAILABLE: Final = "unavailable"
# HA's recorder keeps attribute-only changes of these domains "significant" (history/const.py).
SIGNIFICANT_DOMAINS: Final = frozenset(
    {"climate", "device_tracker", "humidifier", "thermostat", "water_heater"}
)
# Domains whose attributes HA returns even with minimal_response / no_attributes.
NEED_ATTRIBUTE_DOMAINS: Final = frozenset(
    {"climate", "humidifier", "input_datetime", "thermostat", "water_heater"}
)
HOME_LATITUDE: Final = 52.37
HOME_LONGITUDE: Final = 4.89
# Total history entries kept across entities when no per-entity size is given (~40 MB).
_HISTORY_BUDGET: Final = 200_000

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_CROCKFORD: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Every pair of Crockford digits, indexed by 10 bits: a ULID is 13 lookups.
_CROCKFORD_PAIRS: Final = [high + low for high in _CROCKFORD for low in _CROCKFORD]
# HA's own serialisation: compact, non-ASCII written as UTF-8 (°C stays °C).
encode_json: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


@lru_cache(maxsize=8)
def _second_prefix(epoch_s: int) -> str:
    return (_EPOCH + timedelta(seconds=epoch_s)).strftime("%Y-%m-%dT%H:%M:%S")


def iso_from_us(epoch_us: int) -> str:
    """HA's timestamp format: UTC ISO 8601, always with microseconds and `+00:00`."""
    seconds, micros = divmod(epoch_us, 1_000_000)
    return f"{_second_prefix(seconds)}.{micros:06d}+00:00"


def us_from_datetime(moment: datetime) -> int:
    """Exact epoch microseconds of an aware datetime (naive ones are taken as UTC, as HA does)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


def ulid(epoch_ms: int, randomness: int) -> str:
    """A ULID like HA's context ids: 48-bit milliseconds + 80 random bits, Crockford base32."""
    value = ((epoch_ms & (2**48 - 1)) << 80) | (randomness & (2**80 - 1))
    pairs = _CROCKFORD_PAIRS
    return "".join([pairs[(value >> shift) & 1023] for shift in range(120, -1, -10)])


class StateChange(NamedTuple):
    """A `state_changed` event and its JSON text, built once and shared by every consumer."""

    event: JSON
    json: str


class HistoryEntry(NamedTuple):
    """One recorded state: what `history/history_during_period` is built from."""

    state: str
    attributes: Mapping[str, Any]
    last_changed_us: int
    last_updated_us: int


@dataclass(frozen=True, slots=True)
class Area:
    area_id: str
    name: str


@dataclass(frozen=True, slots=True)
class Device:
    device_id: str
    name: str
    manufacturer: str | None
    model: str | None
    area_id: str | None
    platform: str
    config_entry_id: str
    entry_type: str | None = None


@dataclass(frozen=True, slots=True)
class RegistryEntry:
    """An entity registry entry; `area_id` is only an override (else the device's area applies)."""

    entity_id: str
    registry_id: str
    unique_id: str
    platform: str
    original_name: str
    device_id: str | None
    area_id: str | None
    config_entry_id: str | None
    has_entity_name: bool
    name: str | None = None
    """The user's name for the entity (set in HA's settings), None until they give one."""


AREAS: Final = (
    Area("living_room", "Living Room"),
    Area("kitchen", "Kitchen"),
    Area("bedroom", "Bedroom"),
)


@dataclass(frozen=True, slots=True)
class Floor:
    """A floor registry entry (HA 2024.4+: `helpers/floor_registry.py`)."""

    floor_id: str
    name: str
    level: int | None
    icon: str | None = None


@dataclass(frozen=True, slots=True)
class Label:
    """A label registry entry (HA 2024.4+: `helpers/label_registry.py`)."""

    label_id: str
    name: str
    color: str | None = None
    icon: str | None = None
    description: str | None = None


FLOORS: Final = (
    Floor("ground_floor", "Ground Floor", 0, "mdi:home-floor-0"),
    Floor("first_floor", "First Floor", 1, "mdi:home-floor-1"),
)
AREA_FLOORS: Final = {
    "living_room": "ground_floor",
    "kitchen": "ground_floor",
    "bedroom": "first_floor",
}
LABELS: Final = (
    Label("heating", "Heating", "red", "mdi:radiator", "Radiators and thermostats"),
    Label("energy", "Energy", "amber", "mdi:lightning-bolt"),
    Label("night", "Night", "indigo", "mdi:weather-night"),
)
# Who carries which label at first: an entity's own, a device's, an area's.
_ENTITY_LABELS: Final = {"climate.bedroom": ("heating",), "switch.coffee_machine": ("energy",)}
_DEVICE_LABELS: Final = {"Smart Meter": ("energy",)}
_AREA_LABELS: Final = {"bedroom": ("night",)}
LabelHolder = Literal["area", "device", "entity"]


# --- entity behaviours ---------------------------------------------------------------------


class _Entity:
    """How one entity behaves: its first state and how it changes.

    Subclasses keep their own value between changes, so a state string like "unavailable"
    never has to be parsed back. `change` must return something different from the current
    state (HA fires no event for an identical state); attribute dicts are never mutated
    once returned, so states and history can share them.
    """

    weight: float = 1.0
    can_be_unavailable = False
    user_driven = False  # changes carry a user_id in their context, as a UI action does

    def __init__(self, entity_id: str, name: str) -> None:
        self.entity_id = entity_id
        self.name = name

    @property
    def domain(self) -> str:
        return self.entity_id.split(".", 1)[0]

    def initial(self, rng: random.Random) -> tuple[str, JSON]:
        raise NotImplementedError

    def change(self, rng: random.Random, available: bool) -> tuple[str, JSON]:
        raise NotImplementedError


class _Numeric(_Entity):
    """A measuring sensor: a bounded random walk, or a meter that only grows."""

    weight = 5.0
    can_be_unavailable = True

    def __init__(
        self,
        entity_id: str,
        name: str,
        *,
        unit: str,
        device_class: str,
        state_class: str = "measurement",
        start: float,
        low: float,
        high: float,
        step: float,
        decimals: int,
    ) -> None:
        super().__init__(entity_id, name)
        self.value = start
        self.low, self.high, self.step, self.decimals = low, high, step, decimals
        self.increasing = state_class == "total_increasing"
        # Key order as HA writes it for template/MQTT sensors.
        self.attributes: JSON = {
            "state_class": state_class,
            "unit_of_measurement": unit,
            "device_class": device_class,
            "friendly_name": name,
        }

    def _text(self) -> str:
        return f"{round(self.value, self.decimals) + 0.0:.{self.decimals}f}"

    def initial(self, rng: random.Random) -> tuple[str, JSON]:
        return self._text(), self.attributes

    def change(self, rng: random.Random, available: bool) -> tuple[str, JSON]:
        before = self._text()
        if self.increasing:
            self.value += rng.uniform(0.0, self.step)
        else:
            self.value += rng.gauss(0.0, self.step)
            if not self.low <= self.value <= self.high:
                self.value = min(max(self.value, self.low), self.high)
        text = self._text()
        if available and text == before:
            unit = 10.0**-self.decimals
            self.value += unit if (self.increasing or self.value + unit <= self.high) else -unit
            text = self._text()
        return text, self.attributes


class _Binary(_Entity):
    weight = 2.0
    can_be_unavailable = True

    def __init__(self, entity_id: str, name: str, device_class: str) -> None:
        super().__init__(entity_id, name)
        self.on = False
        self.attributes: JSON = {"device_class": device_class, "friendly_name": name}

    def initial(self, rng: random.Random) -> tuple[str, JSON]:
        return "off", self.attributes

    def change(self, rng: random.Random, available: bool) -> tuple[str, JSON]:
        self.on = not self.on
        return ("on" if self.on else "off"), self.attributes


class _Switch(_Binary):
    weight = 1.0
    can_be_unavailable = False
    user_driven = True

    def __init__(self, entity_id: str, name: str) -> None:
        super().__init__(entity_id, name, "outlet")
        self.attributes = {"friendly_name": name}


class _Light(_Entity):
    """A colour lamp: on/off with brightness and colour lists, null colour attributes when off."""

    user_driven = True

    def __init__(self, entity_id: str, name: str) -> None:
        super().__init__(entity_id, name)
        self.on = False
        self.brightness = 128
        self.rgb = (255, 180, 107)

    def _attributes(self) -> JSON:
        on = self.on
        hs: list[float] | None = None
        xy: list[float] | None = None
        if on:
            red, green, blue = (c / 255 for c in self.rgb)
            hue, sat, _ = colorsys.rgb_to_hsv(red, green, blue)
            hs = [round(hue * 360, 3), round(sat * 100, 3)]
            x = 0.4124 * red + 0.3576 * green + 0.1805 * blue
            y = 0.2126 * red + 0.7152 * green + 0.0722 * blue
            total = x + y + 0.0193 * red + 0.1192 * green + 0.9505 * blue
            xy = [round(x / total, 3), round(y / total, 3)] if total else [0.0, 0.0]
        return {
            "supported_color_modes": ["rgb"],
            "color_mode": "rgb" if on else None,
            "brightness": self.brightness if on else None,
            "hs_color": hs,
            "rgb_color": list(self.rgb) if on else None,
            "xy_color": xy,
            "friendly_name": self.name,
            "supported_features": 40,
        }

    def initial(self, rng: random.Random) -> tuple[str, JSON]:
        return "off", self._attributes()

    def change(self, rng: random.Random, available: bool) -> tuple[str, JSON]:
        if not self.on:
            self.on = True
            self.rgb = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        elif rng.random() < 0.4:
            self.on = False
        elif rng.random() < 0.5:
            self.brightness = 1 + (self.brightness - 1 + rng.randrange(1, 255)) % 255
        else:
            red, green, blue = self.rgb
            self.rgb = ((red + rng.randrange(1, 256)) % 256, green, blue)
        return ("on" if self.on else "off"), self._attributes()


class _Climate(_Entity):
    """A thermostat: the HVAC mode is the state; temperatures are attributes that drift."""

    weight = 2.0
    modes: Final = ("off", "heat", "auto")

    def __init__(self, entity_id: str, name: str) -> None:
        super().__init__(entity_id, name)
        self.mode = "heat"
        self.current = 19.5
        self.target = 20.5

    def _attributes(self) -> JSON:
        if self.mode == "off":
            action = "off"
        else:
            action = "heating" if self.current < self.target else "idle"
        return {
            "hvac_modes": list(self.modes),
            "min_temp": 7.0,
            "max_temp": 35.0,
            "target_temp_step": 0.5,
            "current_temperature": self.current,
            "temperature": self.target,
            "hvac_action": action,
            "friendly_name": self.name,
            "supported_features": 385,
        }

    def initial(self, rng: random.Random) -> tuple[str, JSON]:
        return self.mode, self._attributes()

    def change(self, rng: random.Random, available: bool) -> tuple[str, JSON]:
        roll = rng.random()
        if roll < 0.7:
            drift = rng.choice((-0.3, -0.2, -0.1, 0.1, 0.2, 0.3))
            current = round(self.current + drift, 1)
            self.current = current if 10.0 <= current <= 30.0 else round(self.current - drift, 1)
        elif roll < 0.9:
            self.target = round(
                rng.choice([t / 2 for t in range(32, 49) if t / 2 != self.target]), 1
            )
        else:
            self.mode = rng.choice([m for m in self.modes if m != self.mode])
        return self.mode, self._attributes()


class _Counter(_Entity):
    weight = 1.0

    def __init__(self, entity_id: str, name: str) -> None:
        super().__init__(entity_id, name)
        self.count = 0
        self.attributes: JSON = {"editable": False, "initial": 0, "step": 1, "friendly_name": name}

    def initial(self, rng: random.Random) -> tuple[str, JSON]:
        return str(self.count), self.attributes

    def change(self, rng: random.Random, available: bool) -> tuple[str, JSON]:
        self.count += 1
        return str(self.count), self.attributes


class _InputNumber(_Entity):
    """A helper set from the UI; HA writes its state as a float string ("1234.0")."""

    weight = 0.5
    user_driven = True

    def __init__(self, entity_id: str, name: str, unit: str, low: float, high: float) -> None:
        super().__init__(entity_id, name)
        self.low, self.high = low, high
        self.value = low
        self.attributes: JSON = {
            "initial": None,
            "editable": False,
            "min": low,
            "max": high,
            "step": 1.0,
            "mode": "slider",
            "unit_of_measurement": unit,
            "friendly_name": name,
        }

    def initial(self, rng: random.Random) -> tuple[str, JSON]:
        return str(self.value), self.attributes

    def change(self, rng: random.Random, available: bool) -> tuple[str, JSON]:
        before = self.value
        while self.value == before:
            self.value = float(rng.randint(int(self.low), int(self.high)))
        return str(self.value), self.attributes


class _Presence(_Entity):
    """A person or phone tracker: home/not_home, with GPS attributes that move on their own."""

    weight = 0.5

    def __init__(self, entity_id: str, name: str, extra: JSON) -> None:
        super().__init__(entity_id, name)
        self.home = True
        self.extra = extra
        self.latitude, self.longitude = HOME_LATITUDE, HOME_LONGITUDE
        self.accuracy = 12
        self.battery = 100

    def _attributes(self) -> JSON:
        attributes: JSON = dict(self.extra)
        if self.domain == "device_tracker":
            attributes["battery_level"] = self.battery
        attributes.update(
            latitude=self.latitude,
            longitude=self.longitude,
            gps_accuracy=self.accuracy,
            friendly_name=self.name,
        )
        return attributes

    def _state(self) -> str:
        return "home" if self.home else "not_home"

    def initial(self, rng: random.Random) -> tuple[str, JSON]:
        return self._state(), self._attributes()

    def change(self, rng: random.Random, available: bool) -> tuple[str, JSON]:
        if rng.random() < 0.3:
            self.home = not self.home
        if self.home:
            self.latitude, self.longitude = HOME_LATITUDE, HOME_LONGITUDE
        else:
            self.latitude = round(HOME_LATITUDE + rng.uniform(0.01, 0.2), 6)
            self.longitude = round(HOME_LONGITUDE + rng.uniform(0.01, 0.2), 6)
        self.accuracy = 1 + (self.accuracy + rng.randrange(1, 50)) % 60
        if self.battery > 5 and rng.random() < 0.3:
            self.battery -= 1
        return self._state(), self._attributes()


class _Sun(_Entity):
    """sun.sun: elevation and azimuth drift, the state follows the sign of the elevation."""

    weight = 0.3

    def __init__(self, entity_id: str, name: str) -> None:
        super().__init__(entity_id, name)
        self.elevation = 12.5
        self.azimuth = 140.0
        self.rising = True
        self.times: dict[str, str] = {}

    def _attributes(self) -> JSON:
        return {
            **self.times,
            "elevation": self.elevation,
            "azimuth": self.azimuth,
            "rising": self.rising,
            "friendly_name": self.name,
        }

    def _state(self) -> str:
        return "above_horizon" if self.elevation > 0 else "below_horizon"

    def initial(self, rng: random.Random) -> tuple[str, JSON]:
        return self._state(), self._attributes()

    def change(self, rng: random.Random, available: bool) -> tuple[str, JSON]:
        delta = rng.uniform(0.5, 6.0) * (1 if self.rising else -1)
        self.elevation = round(self.elevation + delta, 2)
        if abs(self.elevation) > 60:
            self.rising = not self.rising
        self.azimuth = round((self.azimuth + rng.uniform(0.5, 3.0)) % 360, 2)
        return self._state(), self._attributes()


class _Text(_Entity):
    """A template sensor with free text, non-ASCII and emoji included."""

    weight = 0.5
    texts: Final = (
        "Alles gut ✓",
        "Fenster offen 🪟",
        "Kaffee ☕ fertig",
        "Température agréable 😊",
        "héllo ✓",
        "Ошибка датчика",
        "洗濯機 完了",
    )

    def __init__(self, entity_id: str, name: str) -> None:
        super().__init__(entity_id, name)
        self.text = self.texts[0]
        self.attributes: JSON = {"icon": "mdi:home-heart", "friendly_name": name}

    def initial(self, rng: random.Random) -> tuple[str, JSON]:
        return self.text, self.attributes

    def change(self, rng: random.Random, available: bool) -> tuple[str, JSON]:
        self.text = rng.choice([t for t in self.texts if t != self.text])
        return self.text, self.attributes


# --- the catalogue -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _DeviceSpec:
    key: str
    name: str
    manufacturer: str | None
    model: str | None
    area_id: str | None
    platform: str
    entry_type: str | None = None


@dataclass(frozen=True, slots=True)
class _Placement:
    """Where an entity sits in the registries (None device: a helper or a YAML entity)."""

    device: _DeviceSpec | None
    platform: str
    area_override: str | None = None
    registered: bool = True


_DEVICES: Final = {
    spec.key: spec
    for spec in (
        _DeviceSpec("salon", "Thermomètre séjour", "Aqara", "WSDCGQ11LM", "living_room", "zha"),
        _DeviceSpec("door", "Front Door Contact", "Aqara", "MCCGQ11LM", "living_room", "zha"),
        _DeviceSpec("lamp", "Living Room Lamp", "Signify", "Hue color lamp", "living_room", "hue"),
        _DeviceSpec("plug", "Coffee Machine Plug", "Shelly", "Plug S", "kitchen", "shelly"),
        _DeviceSpec("trv", "Bedroom Thermostat", "Eurotronic", "Spirit Zigbee", "bedroom", "zha"),
        _DeviceSpec("phone", "Alice's Phone", "Google", "Pixel 8", None, "mobile_app"),
        _DeviceSpec("sun", "Sun", None, None, None, "sun", entry_type="service"),
        _DeviceSpec("kueche", "Küche Multisensor", "Aqara", "RTCGQ11LM", "kitchen", "zha"),
        _DeviceSpec("meter", "Smart Meter", "Landis+Gyr", "E350", None, "dsmr"),
        _DeviceSpec("motion", "Hue Motion Sensor", "Signify", "SML001", "living_room", "hue"),
        _DeviceSpec("balcony", "Balcony Sensor", "Aqara", "WSDCGQ11LM", None, "zha"),
    )
}


def _fixed_entities() -> list[tuple[_Entity, _Placement]]:
    """The hand-made part of the home: one entity of every kind, diverse first."""
    dev = _DEVICES
    return [
        (
            _Numeric(
                "sensor.temperature_du_sejour",
                "Température du séjour",
                unit="°C",
                device_class="temperature",
                start=21.0,
                low=15.0,
                high=28.0,
                step=0.15,
                decimals=1,
            ),
            _Placement(dev["salon"], "zha"),
        ),
        (_Binary("binary_sensor.front_door", "Front Door", "door"), _Placement(dev["door"], "zha")),
        (_Light("light.living_room", "Living Room Lamp"), _Placement(dev["lamp"], "hue")),
        (_Switch("switch.coffee_machine", "Coffee Machine"), _Placement(dev["plug"], "shelly")),
        (_Climate("climate.bedroom", "Bedroom Thermostat"), _Placement(dev["trv"], "zha")),
        (_Counter("counter.pulses", "Pulses"), _Placement(None, "counter", "kitchen")),
        (
            _InputNumber("input_number.power_level", "Power level", "W", 0.0, 5000.0),
            _Placement(None, "input_number"),
        ),
        (
            _Presence(
                "person.alice",
                "Alice",
                {
                    "editable": True,
                    "id": "alice",
                    "device_trackers": ["device_tracker.alice_phone"],
                    "source": "device_tracker.alice_phone",
                },
            ),
            _Placement(None, "person"),
        ),
        (
            _Presence("device_tracker.alice_phone", "Alice's Phone", {"source_type": "gps"}),
            _Placement(dev["phone"], "mobile_app"),
        ),
        (_Sun("sun.sun", "Sun"), _Placement(dev["sun"], "sun")),
        # A YAML template sensor without unique_id: in the states, not in the entity registry.
        (_Text("sensor.kuche_status", "Küche Status"), _Placement(None, "template", None, False)),
        (
            _Numeric(
                "sensor.kuche_luftfeuchtigkeit",
                "Küche Luftfeuchtigkeit",
                unit="%",
                device_class="humidity",
                start=48.0,
                low=30.0,
                high=80.0,
                step=0.4,
                decimals=1,
            ),
            _Placement(dev["kueche"], "zha"),
        ),
        (
            _Numeric(
                "sensor.power_usage",
                "Power Usage",
                unit="W",
                device_class="power",
                start=350.0,
                low=0.0,
                high=4000.0,
                step=25.0,
                decimals=0,
            ),
            _Placement(dev["meter"], "dsmr"),
        ),
        (
            _Numeric(
                "sensor.energy_total",
                "Energy Total",
                unit="kWh",
                device_class="energy",
                state_class="total_increasing",
                start=12034.125,
                low=0.0,
                high=1e9,
                step=0.01,
                decimals=3,
            ),
            _Placement(dev["meter"], "dsmr"),
        ),
        (
            _Binary("binary_sensor.bedroom_motion", "Bedroom Motion", "motion"),
            _Placement(dev["motion"], "hue", area_override="bedroom"),
        ),
        (
            _Numeric(
                "sensor.outdoor_temperature",
                "Outdoor Temperature",
                unit="°C",
                device_class="temperature",
                start=8.0,
                low=-15.0,
                high=35.0,
                step=0.2,
                decimals=2,
            ),
            _Placement(dev["balcony"], "zha"),
        ),
    ]


_EXTRA_KINDS: Final = (
    # (object id, friendly name, unit, device class, state class, start, low, high, step, decimals)
    ("temperature", "Temperature", "°C", "temperature", "measurement", 20.0, 5.0, 35.0, 0.1, 1),
    ("humidity", "Humidity", "%", "humidity", "measurement", 50.0, 20.0, 90.0, 0.5, 1),
    ("power", "Power", "W", "power", "measurement", 120.0, 0.0, 3000.0, 15.0, 1),
    ("energy", "Energy", "kWh", "energy", "total_increasing", 100.0, 0.0, 1e9, 0.005, 3),
)


def _extra_entity(index: int) -> tuple[_Entity, _Placement]:
    """Entities past the hand-made ones: numeric sensors, one device each, spread over areas."""
    number = index + 1
    kind, label, unit, device_class, state_class, start, low, high, step, decimals = _EXTRA_KINDS[
        index % len(_EXTRA_KINDS)
    ]
    entity = _Numeric(
        f"sensor.{kind}_{number}",
        f"{label} {number}",
        unit=unit,
        device_class=device_class,
        state_class=state_class,
        start=start,
        low=low,
        high=high,
        step=step,
        decimals=decimals,
    )
    area = AREAS[index % len(AREAS)].area_id
    device = _DeviceSpec(f"sensor_{number}", f"Sensor {number}", "Tasmota", "ESP32", area, "mqtt")
    return entity, _Placement(device, "mqtt")


# --- the home ------------------------------------------------------------------------------


class Home:
    """K entities of realistic kinds whose changes are HA `state_changed` events.

    `step(now_us)` applies one change and returns the event with its JSON. Timestamps
    strictly increase across the whole home (bumped by 1 µs when the caller's clock did not
    advance), so every (entity_id, last_updated) pair is unique however fast events are drawn.
    Each state is serialised once, when it is set, and reused as the next event's old_state:
    the generator has to keep up with 10,000 events/s.
    """

    def __init__(
        self,
        entities: int = 20,
        *,
        seed: int = 0,
        now_us: int,
        history_size: int | None = None,
        unavailable_probability: float = 0.01,
        floors_and_labels: bool = True,
    ) -> None:
        if entities < 1:
            raise ValueError(f"entities must be at least 1, got {entities}")
        self._rng = random.Random(seed)
        ids = random.Random(f"ha-ingestor-simulator-ids-{seed}")
        self._unavailable_probability = unavailable_probability
        self.user_id = _hex(ids)
        self._last_us = now_us - 1

        fixed = _fixed_entities()
        pairs = fixed[:entities] + [_extra_entity(i) for i in range(len(fixed), entities)]
        self._entities = [entity for entity, _ in pairs]
        self._cum_weights: list[float] = []
        total = 0.0
        for entity in self._entities:
            total += entity.weight
            self._cum_weights.append(total)

        self.areas: list[Area] = list(AREAS)
        self.devices: list[Device] = []
        self.registry: list[RegistryEntry] = []
        self._build_registries(pairs, ids)
        self.floors_and_labels = floors_and_labels
        """False: HA before 2024.4, without floors and labels (areas without those keys)."""
        self.floors: list[Floor] = list(FLOORS) if floors_and_labels else []
        self.labels: list[Label] = list(LABELS) if floors_and_labels else []
        self.area_floors: dict[str, str | None] = dict(AREA_FLOORS) if floors_and_labels else {}
        self.held_labels: dict[tuple[LabelHolder, str], tuple[str, ...]] = {}
        """(holder kind, area/device/entity id) → its label ids."""
        if floors_and_labels:
            self._place_labels()

        size = history_size or max(1_000, _HISTORY_BUDGET // entities)
        self.states: dict[str, JSON] = {}
        self.states_json: dict[str, str] = {}
        self._history: dict[str, deque[HistoryEntry]] = {}
        self._last_changed_us: dict[str, int] = {}
        self._attributes_json: dict[str, tuple[JSON, str]] = {}
        for entity in self._entities:
            if isinstance(entity, _Sun):
                entity.times = _sun_times(now_us)
            if isinstance(entity, _Presence) and entity.domain == "person":
                entity.extra = {**entity.extra, "user_id": self.user_id}
            state, attributes = entity.initial(self._rng)
            stamp = self._tick(now_us)
            context = self._context(stamp, user_driven=False)
            self._history[entity.entity_id] = deque(maxlen=size)
            self._record(
                entity.entity_id, state, attributes, stamp, stamp, context, encode_json(context)
            )

    @property
    def entity_ids(self) -> list[str]:
        return [entity.entity_id for entity in self._entities]

    @property
    def last_timestamp_us(self) -> int:
        """The newest last_updated handed out; the next change is stamped after it."""
        return self._last_us

    def step(self, now_us: int) -> StateChange:
        """Change one entity (chosen by weight) at `now_us` and return HA's event for it."""
        rng = self._rng
        cum_weights = self._cum_weights
        index = bisect.bisect(cum_weights, rng.random() * cum_weights[-1])
        return self._change(self._entities[min(index, len(cum_weights) - 1)], now_us)

    def change(self, entity_id: str, now_us: int) -> StateChange:
        """Change this entity at `now_us` (as `step` changes one drawn by weight)."""
        entity = next((e for e in self._entities if e.entity_id == entity_id), None)
        if entity is None:
            raise KeyError(f"{entity_id} is not an entity of this home")
        return self._change(entity, now_us)

    def _change(self, entity: _Entity, now_us: int) -> StateChange:
        rng = self._rng
        entity_id = entity.entity_id
        old = self.states[entity_id]
        available = old["state"] != UNAVAILABLE
        if entity.can_be_unavailable and available and rng.random() < self._unavailable_probability:
            state, attributes = UNAVAILABLE, old["attributes"]
        else:
            state, attributes = entity.change(rng, available)
        stamp = self._tick(now_us)
        context = self._context(stamp, user_driven=entity.user_driven)
        context_json = encode_json(context)
        last_changed = stamp if state != old["state"] else self._last_changed_us[entity_id]
        old_json = self.states_json[entity_id]
        new = self._record(entity_id, state, attributes, last_changed, stamp, context, context_json)
        event = {
            "event_type": "state_changed",
            "data": {"entity_id": entity_id, "old_state": old, "new_state": new},
            "origin": "LOCAL",
            "time_fired": new["last_updated"],
            "context": context,
        }
        text = (
            f'{{"event_type":"state_changed","data":{{"entity_id":"{entity_id}",'
            f'"old_state":{old_json},"new_state":{self.states_json[entity_id]}}},'
            f'"origin":"LOCAL","time_fired":"{new["last_updated"]}","context":{context_json}}}'
        )
        return StateChange(event, text)

    def set_state(self, entity_id: str, state: str, now_us: int) -> StateChange:
        """A state a test chooses (a value, `unavailable`), attributes kept: HA's event for it."""
        old = self.states[entity_id]
        stamp = self._tick(now_us)
        context = self._context(stamp, user_driven=False)
        last_changed = stamp if state != old["state"] else self._last_changed_us[entity_id]
        new = self._record(
            entity_id, state, old["attributes"], last_changed, stamp, context, encode_json(context)
        )
        event = {
            "event_type": "state_changed",
            "data": {"entity_id": entity_id, "old_state": old, "new_state": new},
            "origin": "LOCAL",
            "time_fired": new["last_updated"],
            "context": context,
        }
        return StateChange(event, encode_json(event))

    def history(self, entity_id: str) -> Sequence[HistoryEntry]:
        """The retained states of one entity, oldest first (bounded: old ones fall off)."""
        return self._history.get(entity_id, ())

    def history_during_period(
        self,
        start_us: int,
        end_us: int,
        entity_ids: Iterable[str] | None = None,
        *,
        include_start_time_state: bool = True,
        significant_changes_only: bool = True,
        minimal_response: bool = False,
        no_attributes: bool = False,
    ) -> dict[str, list[JSON]]:
        """HA's compressed history (`s`/`a`/`lu`/`lc`, epoch-float seconds) for a period.

        As the recorder does: the state in effect at `start_us` comes first, stamped with the
        start time; then every change with start < last_updated < end. Only state changes
        count when `significant_changes_only` (except for SIGNIFICANT_DOMAINS), and
        `minimal_response` keeps only the state and time of rows after the first.
        """
        result: dict[str, list[JSON]] = {}
        for entity_id in self.entity_ids if entity_ids is None else entity_ids:
            if entity_id in result:
                continue
            rows = self._history.get(entity_id)
            if not rows:
                continue
            domain = entity_id.split(".", 1)[0]
            start_row: HistoryEntry | None = None
            period: list[HistoryEntry] = []
            for row in rows:
                if row.last_updated_us <= start_us:
                    start_row = row
                elif row.last_updated_us < end_us:
                    period.append(row)
                else:
                    break
            if significant_changes_only and domain not in SIGNIFICANT_DOMAINS:
                period = [row for row in period if row.last_changed_us == row.last_updated_us]
            keep_attributes = not no_attributes or domain in NEED_ATTRIBUTE_DOMAINS
            compact = minimal_response and domain not in NEED_ATTRIBUTE_DOMAINS
            out: list[JSON] = []
            if include_start_time_state and start_row is not None:
                out.append(_compressed(start_row, keep_attributes, start_us))
            previous = out[-1]["s"] if out else None
            for row in period:
                if not out or not compact:
                    out.append(_compressed(row, keep_attributes, start_us))
                elif row.state != previous:
                    out.append({"s": row.state, "lu": row.last_updated_us / 1_000_000})
                previous = row.state
            if out:
                result[entity_id] = out
        return result

    # --- registries (shapes of config/*_registry/list in HA 2024.3, with HA 2024.4's floors
    # and labels unless `floors_and_labels` is False) ---

    def area_registry(self) -> list[JSON]:
        areas: list[JSON] = [
            {"aliases": [], "area_id": a.area_id, "icon": None, "name": a.name, "picture": None}
            for a in self.areas
        ]
        if self.floors_and_labels:  # the keys HA 2024.4 added
            for area in areas:
                area["floor_id"] = self.area_floors.get(area["area_id"])
                area["labels"] = list(self.held_labels.get(("area", area["area_id"]), ()))
        return areas

    def floor_registry(self) -> list[JSON]:
        """config/floor_registry/list as HA 2024.4 answers it (config/floor_registry.py)."""
        return [
            {
                "aliases": [],
                "floor_id": f.floor_id,
                "icon": f.icon,
                "level": f.level,
                "name": f.name,
            }
            for f in self.floors
        ]

    def label_registry(self) -> list[JSON]:
        """config/label_registry/list as HA 2024.4 answers it (config/label_registry.py)."""
        return [
            {
                "color": label.color,
                "description": label.description,
                "icon": label.icon,
                "label_id": label.label_id,
                "name": label.name,
            }
            for label in self.labels
        ]

    def device_registry(self) -> list[JSON]:
        return [
            {
                "area_id": d.area_id,
                "configuration_url": None,
                "config_entries": [d.config_entry_id],
                "connections": [],
                "disabled_by": None,
                "entry_type": d.entry_type,
                "hw_version": None,
                "id": d.device_id,
                "identifiers": [[d.platform, d.device_id[:12]]],
                "labels": list(self.held_labels.get(("device", d.device_id), ())),
                "manufacturer": d.manufacturer,
                "model": d.model,
                "name_by_user": None,
                "name": d.name,
                "serial_number": None,
                "sw_version": None,
                "via_device_id": None,
            }
            for d in self.devices
        ]

    def entity_registry(self) -> list[JSON]:
        return [
            {
                "area_id": e.area_id,
                "config_entry_id": e.config_entry_id,
                "device_id": e.device_id,
                "disabled_by": None,
                "entity_category": None,
                "entity_id": e.entity_id,
                "has_entity_name": e.has_entity_name,
                "hidden_by": None,
                "icon": None,
                "id": e.registry_id,
                "labels": list(self.held_labels.get(("entity", e.entity_id), ())),
                "name": e.name,
                "options": {},
                "original_name": e.original_name,
                "platform": e.platform,
                "translation_key": None,
                "unique_id": e.unique_id,
            }
            for e in self.registry
        ]

    def create_area(self, area_id: str, name: str) -> None:
        """What a user does in HA's settings: a new area."""
        if any(a.area_id == area_id for a in self.areas):
            raise ValueError(f"area {area_id!r} exists already")
        self.areas.append(Area(area_id, name))

    def update_entity(self, entity_id: str, *, name: str | None, area_id: str | None) -> None:
        """A user renames an entity and puts it in an area (None: its device's area)."""
        for index, entry in enumerate(self.registry):
            if entry.entity_id == entity_id:
                self.registry[index] = replace(entry, name=name, area_id=area_id)
                return
        raise KeyError(f"{entity_id} is not in the entity registry")

    def rename_entity(self, old: str, new: str, now_us: int) -> tuple[StateChange, StateChange]:
        """A user changes an entity's id in HA's settings (same domain, as HA requires): the
        registry entry keeps its `id`; HA removes the state under the old id and adds it under
        the new one (helpers/entity.py `_async_registry_updated`); the recorder moves the
        history to the new id. Returns the two `state_changed` events, in HA's order."""
        if new in self.states or new.partition(".")[0] != old.partition(".")[0]:
            raise ValueError(f"cannot rename {old} to {new}: taken, or another domain")
        entity = next((e for e in self._entities if e.entity_id == old), None)
        if entity is None:
            raise KeyError(f"{old} is not an entity of this home")
        for index, entry in enumerate(self.registry):
            if entry.entity_id == old:
                self.registry[index] = replace(entry, entity_id=new)
        entity.entity_id = new
        old_state = self.states.pop(old)
        del self.states_json[old], self._last_changed_us[old]
        self._attributes_json.pop(old, None)
        self._history[new] = self._history.pop(old)
        stamp = self._tick(now_us)
        context = self._context(stamp, user_driven=True)
        state = self._record(
            new, old_state["state"], old_state["attributes"], stamp, stamp, context,
            encode_json(context),
        )  # fmt: skip
        fired = state["last_updated"]
        return (
            _state_changed(old, old_state, None, fired, context),
            _state_changed(new, None, state, fired, context),
        )

    def create_floor(self, floor_id: str, name: str, level: int | None) -> None:
        """What a user does in HA's settings (2024.4+): a new floor."""
        self._need_floors_and_labels()
        if any(f.floor_id == floor_id for f in self.floors):
            raise ValueError(f"floor {floor_id!r} exists already")
        self.floors.append(Floor(floor_id, name, level))

    def move_area(self, area_id: str, floor_id: str | None) -> None:
        """A user puts an area on a floor (None: on none)."""
        self._need_floors_and_labels()
        if not any(a.area_id == area_id for a in self.areas):
            raise KeyError(f"{area_id} is not in the area registry")
        if floor_id is not None and not any(f.floor_id == floor_id for f in self.floors):
            raise KeyError(f"{floor_id} is not in the floor registry")
        self.area_floors[area_id] = floor_id

    def create_label(self, label_id: str, name: str, color: str | None = None) -> None:
        """A user creates a label (2024.4+)."""
        self._need_floors_and_labels()
        if any(label.label_id == label_id for label in self.labels):
            raise ValueError(f"label {label_id!r} exists already")
        self.labels.append(Label(label_id, name, color))

    def set_labels(self, holder: LabelHolder, item_id: str, label_ids: Sequence[str]) -> None:
        """A user sets the labels of an area, a device (by id) or an entity."""
        self._need_floors_and_labels()
        known = {label.label_id for label in self.labels}
        if unknown := set(label_ids) - known:
            raise KeyError(f"labels {sorted(unknown)} are not in the label registry")
        self.held_labels[(holder, item_id)] = tuple(label_ids)

    # --- internals ---

    def _need_floors_and_labels(self) -> None:
        if not self.floors_and_labels:
            raise RuntimeError("this home is an HA before 2024.4: no floors or labels")

    def _place_labels(self) -> None:
        """The first labels, on the entities, devices and areas this home has."""
        entity_ids = {entry.entity_id for entry in self.registry}
        for entity_id, labels in _ENTITY_LABELS.items():
            if entity_id in entity_ids:
                self.held_labels[("entity", entity_id)] = labels
        for device in self.devices:
            if device.name in _DEVICE_LABELS:
                self.held_labels[("device", device.device_id)] = _DEVICE_LABELS[device.name]
        for area_id, labels in _AREA_LABELS.items():
            self.held_labels[("area", area_id)] = labels

    def _tick(self, now_us: int) -> int:
        stamp = now_us if now_us > self._last_us else self._last_us + 1
        self._last_us = stamp
        return stamp

    def _context(self, stamp_us: int, *, user_driven: bool) -> JSON:
        return {
            "id": ulid(stamp_us // 1000, self._rng.getrandbits(80)),
            "parent_id": None,
            "user_id": self.user_id if user_driven else None,
        }

    def _record(
        self,
        entity_id: str,
        state: str,
        attributes: JSON,
        last_changed_us: int,
        last_updated_us: int,
        context: JSON,
        context_json: str,
    ) -> JSON:
        updated = iso_from_us(last_updated_us)
        changed = updated if last_changed_us == last_updated_us else iso_from_us(last_changed_us)
        new = {
            "entity_id": entity_id,
            "state": state,
            "attributes": attributes,
            "last_changed": changed,
            "last_updated": updated,
            "context": context,
        }
        cached = self._attributes_json.get(entity_id)
        if cached is not None and cached[0] is attributes:
            attributes_json = cached[1]
        else:
            attributes_json = encode_json(attributes)
            self._attributes_json[entity_id] = (attributes, attributes_json)
        self.states_json[entity_id] = (
            f'{{"entity_id":"{entity_id}","state":{encode_json(state)},'
            f'"attributes":{attributes_json},"last_changed":"{changed}",'
            f'"last_updated":"{updated}","context":{context_json}}}'
        )
        self.states[entity_id] = new
        self._last_changed_us[entity_id] = last_changed_us
        self._history[entity_id].append(
            HistoryEntry(state, attributes, last_changed_us, last_updated_us)
        )
        return new

    def _build_registries(
        self, pairs: list[tuple[_Entity, _Placement]], ids: random.Random
    ) -> None:
        entries_by_platform: dict[str, str] = {}
        devices: dict[str, Device] = {}
        for entity, placement in pairs:
            spec = placement.device
            config_entry_id: str | None = None
            device_id: str | None = None
            if spec is not None:
                config_entry_id = entries_by_platform.setdefault(spec.platform, _hex(ids))
                if spec.key not in devices:
                    devices[spec.key] = Device(
                        device_id=_hex(ids),
                        name=spec.name,
                        manufacturer=spec.manufacturer,
                        model=spec.model,
                        area_id=spec.area_id,
                        platform=spec.platform,
                        config_entry_id=config_entry_id,
                        entry_type=spec.entry_type,
                    )
                device_id = devices[spec.key].device_id
            registry_id = _hex(ids)
            object_id = entity.entity_id.split(".", 1)[1]
            if not placement.registered:
                continue
            self.registry.append(
                RegistryEntry(
                    entity_id=entity.entity_id,
                    registry_id=registry_id,
                    unique_id=object_id if device_id is None else f"{device_id[:12]}-{object_id}",
                    platform=placement.platform,
                    original_name=entity.name,
                    device_id=device_id,
                    area_id=placement.area_override,
                    config_entry_id=config_entry_id,
                    has_entity_name=False,
                )
            )
        self.devices = list(devices.values())


def _hex(rng: random.Random) -> str:
    return f"{rng.getrandbits(128):032x}"


def _sun_times(now_us: int) -> dict[str, str]:
    """sun.sun's next_* attributes: fixed offsets from the start, as ISO strings like HA's."""
    offsets = {
        "next_dawn": 6.2,
        "next_dusk": 18.1,
        "next_midnight": 12.0,
        "next_noon": 24.0,
        "next_rising": 6.8,
        "next_setting": 17.6,
    }
    return {
        name: (_EPOCH + timedelta(microseconds=now_us, hours=hours))
        .replace(microsecond=0)
        .isoformat()
        for name, hours in offsets.items()
    }


def _compressed(row: HistoryEntry, keep_attributes: bool, start_us: int) -> JSON:
    compressed: JSON = {"s": row.state}
    if keep_attributes:
        compressed["a"] = row.attributes
    if row.last_updated_us < start_us:
        compressed["lu"] = start_us / 1_000_000
    else:
        compressed["lu"] = row.last_updated_us / 1_000_000
        if row.last_changed_us != row.last_updated_us:
            compressed["lc"] = row.last_changed_us / 1_000_000
    return compressed


def _state_changed(
    entity_id: str, old: JSON | None, new: JSON | None, fired: str, context: JSON
) -> StateChange:
    """A `state_changed` event built whole (the rare ones: the hot path writes its text)."""
    event = {
        "event_type": "state_changed",
        "data": {"entity_id": entity_id, "old_state": old, "new_state": new},
        "origin": "LOCAL",
        "time_fired": fired,
        "context": context,
    }
    return StateChange(event, encode_json(event))
