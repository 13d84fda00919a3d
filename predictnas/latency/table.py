"""The latency table file (``lut/<device-id>.json``): what it holds, and reading it back with one-line errors.

A table is data: the device and its fingerprint, the search space and reference input it was measured
for, the protocol, one entry per :class:`~predictnas.latency.keys.Key`, the calibration, its accuracy on
held-out models, and every whole-model measurement behind those figures. ``schema`` is checked on
load: a table from another schema version is refused, not guessed at.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..artifact import Artifact
from ..cache import measured_tables
from ..errors import PredictnasError
from ..pretrained import tables_dir
from ..space import DEFAULT_SPACE, SpaceConfig
from .calibration import Calibration
from .keys import Frames, Key
from .protocol import Measurement

FORMAT = "predictnas-latency-table"
# 2: the modules timed changed (rotary positions in the attention, pair-mean downsampling); entries of 1 time
# other graphs
SCHEMA_VERSION = 2


# how much each agreeing fingerprint field makes another machine's table the closest stand-in: the
# instruction set decides the kernels, the rest tells generations apart
CLOSEST_BY = {"isa": 3, "cpu_vendor": 1, "cpu_family": 1, "cpu_model_number": 1, "cpu_model": 1}
# the speed probe's relative difference beyond which this is another machine: the Xeon that built its tables
# ran their reference 1.08-1.23x as long 40 minutes later, nothing else running (the host's own drift, which
# the protocol normalizes); the machine classes it must tell apart differ by 1.6x and 2.9x
PROBE_TOLERANCE = 0.30


class MissingEntry(PredictnasError):
    """An architecture needs a module shape the table does not hold."""


@dataclass(frozen=True)
class Entry:
    key: Key
    measurement: Measurement
    params: int  # parameters of the module (its fp32 weights are 4 bytes each)
    attempt: int = 0  # which build attempt measured it (a resumed build keeps earlier attempts' entries)
    scale: float = 1.0  # drift correction applied to ``measurement.ms`` (nominal / current reference latency)

    @property
    def ns(self) -> int:
        """The entry in integer nanoseconds: sums of entries are exact and order-independent."""
        return round(self.measurement.ms * 1e6)

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key.to_dict(), **self.measurement.to_dict(), "params": self.params,
                "attempt": self.attempt, "scale": round(self.scale, 6)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Entry":
        return cls(Key.from_dict(d["key"]), Measurement.from_dict(d), int(d["params"]), int(d.get("attempt", 0)),
                   float(d.get("scale", 1.0)))


@dataclass(frozen=True)
class LatencyTable(Artifact):
    device: dict[str, Any]  # {"name", "id", "fingerprint"}
    space: SpaceConfig
    input_seconds: float
    frames: Frames
    protocol: dict[str, Any]
    reference_ms: float  # nominal latency of the protocol's reference graph on this device
    entries: dict[Key, Entry]
    calibration: Calibration
    accuracy: dict[str, Any] = field(default_factory=dict)
    models: dict[str, Any] = field(default_factory=dict)  # the measured whole models behind the calibration
    build: dict[str, Any] = field(default_factory=dict)
    source: str = "latency table"  # where it was read from, for messages
    FORMAT: ClassVar[str] = FORMAT
    KIND: ClassVar[str] = "latency table"

    @property
    def device_id(self) -> str:
        return self.device["id"]

    def entry(self, key: Key) -> Entry:
        try:
            return self.entries[key]
        except KeyError:
            raise MissingEntry(f"{self.source}: no entry for {key} (device {self.device_id}, space "
                               f"{self.space.name}, {self.input_seconds:g} s input); rebuild it with "
                               f"predictnas build-lut --space {self.space.name} "
                               f"--input-seconds {self.input_seconds:g}") from None

    def hardware_gap(self) -> str | None:
        """Why this machine is not the one the table describes, or ``None``: fingerprint fields that differ,
        else the speed probe, the table's reference graph timed here (about a second, once per process)
        more than :data:`PROBE_TOLERANCE` away from the table's ``reference_ms``. The probe catches what a
        fingerprint cannot: another host under one CPU name, a throttled or busy machine."""
        from .devices import fingerprint_mismatch, get_device
        from .protocol import PROTOCOLS, reference_now_ms

        device = get_device(self.device["name"])
        problem = fingerprint_mismatch(self.device["fingerprint"], device.fingerprint())
        problem = problem and f"it was {problem}"
        protocols = PROTOCOLS.get(self.protocol.get("name", ""))
        if problem is None and self.protocol.get("speed_probe", True) and protocols is not None:
            now = reference_now_ms(device.name, protocols.reference_runs)
            if abs(now / self.reference_ms - 1) > PROBE_TOLERANCE:
                problem = (f"its reference graph runs in {now:.2f} ms here against {self.reference_ms:.2f} ms when "
                           f"the table was built ({now / self.reference_ms:.2f}x: another machine of the same name, "
                           "or this one busy)")
        return problem

    def check_device(self, allow_mismatch: bool = False) -> str | None:
        """Hardware gap guard: ``None`` if this machine is the table's (:meth:`hardware_gap`); else the
        description (``allow_mismatch``, for a loud warning) or :class:`~.devices.DeviceMismatch`."""
        from .devices import DeviceMismatch

        problem = self.hardware_gap()
        if problem is None:
            return None
        message = (f"{self.source}: {problem}; its latencies may not hold on this machine (adapt it here in about "
                   f"3 minutes: predictnas build-lut --device {self.device['name']} --adapt-from {self.source})")
        if not allow_mismatch:
            raise DeviceMismatch(message)
        return message

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "schema": SCHEMA_VERSION, "device": self.device, "space": self.space.to_dict(),
            "reference_input": {"seconds": self.input_seconds, "frames": self.frames.input,
                                "encoder_frames": self.frames.encoder, "reduced_frames": self.frames.reduced},
            "protocol": self.protocol, "reference_ms": self.reference_ms,
            "entries": [e.to_dict() for e in self.entries.values()],
            "calibration": self.calibration.to_dict(), "accuracy": self.accuracy, "models": self.models,
            "build": self.build,
        }

    @classmethod
    def from_dict(cls, data: dict, source: str = "latency table") -> "LatencyTable":
        if data.get("schema") != SCHEMA_VERSION:
            raise PredictnasError(f"{source}: latency table schema version {data.get('schema')!r} is not supported "
                                  f"(this predictnas reads version {SCHEMA_VERSION}); rebuild it with predictnas build-lut")
        ref = data["reference_input"]
        frames = Frames(int(ref["frames"]), int(ref["encoder_frames"]), int(ref["reduced_frames"]))
        if frames != Frames.of(frames.input):
            raise ValueError(f"reference_input: frame counts {frames} do not follow from {frames.input} frames")
        entries = {}
        for i, raw in enumerate(_typed(data, "entries", list)):
            try:
                entry = Entry.from_dict(raw)
            except KeyError as e:
                raise ValueError(f"entries[{i}]: missing field {e}") from None
            except (PredictnasError, TypeError, ValueError) as e:
                raise ValueError(f"entries[{i}]: {e}") from None
            if not (entry.measurement.ms >= 0 and math.isfinite(entry.measurement.ms)):
                raise ValueError(f"entries[{i}]: negative, infinite or missing latency")
            entries[entry.key] = entry
        reference_ms = float(data["reference_ms"])
        if not (reference_ms > 0 and math.isfinite(reference_ms)):
            raise ValueError(f"reference_ms {data['reference_ms']!r}: the reference graph's latency must be "
                             "a positive number (every measurement is normalised by it)")
        device = _typed(data, "device", dict)
        for name in ("name", "id", "fingerprint"):
            _typed(device, name, dict if name == "fingerprint" else str)
        return cls(
            device=device, space=SpaceConfig.from_dict(_typed(data, "space", dict)),
            input_seconds=float(ref["seconds"]), frames=frames, protocol=_typed(data, "protocol", dict),
            reference_ms=reference_ms, entries=entries,
            calibration=Calibration.from_dict(_typed(data, "calibration", dict)),
            accuracy=_typed(data, "accuracy", dict), models=_typed(data, "models", dict),
            build=_typed(data, "build", dict), source=source)


def _typed(d: dict, name: str, kind: type) -> Any:
    value = d[name]
    if not isinstance(value, kind):
        raise TypeError(f"{name}: expected {kind.__name__}, got {type(value).__name__}")
    return value


def default_table_path(device_id: str, space_name: str = DEFAULT_SPACE.name, directory: Path | None = None) -> Path:
    """Where ``build-lut`` writes by default: ``<cache>/lut/<device-id>.json`` (other spaces:
    ``<space>-<device-id>.json``); ``directory`` replaces the cache's table folder."""
    name = f"{device_id}.json" if space_name == DEFAULT_SPACE.name else f"{space_name}-{device_id}.json"
    return (measured_tables() if directory is None else Path(directory)) / name


def table_directories() -> list[Path]:
    """Where tables are looked for, in order: those measured on this machine, then the shipped ones."""
    return [measured_tables(), tables_dir()]


def exact_table(device_id: str, space_name: str = DEFAULT_SPACE.name,
                directories: list[Path] | None = None) -> Path | None:
    """The table of this exact device id (this machine's fingerprint), measured or shipped, if any."""
    for directory in directories or table_directories():
        path = default_table_path(device_id, space_name, directory)
        if path.exists():
            return path
    return None


def find_table(device_name: str = "cpu", space_name: str = DEFAULT_SPACE.name,
               directories: list[Path] | None = None) -> Path:
    """The table for a device name and space: the one with this machine's fingerprint if there is one
    (measured here first, then shipped), else any table of that device name (the caller warns about the
    hardware gap)."""
    from .devices import get_device

    directories = directories or table_directories()
    device = get_device(device_name)
    exact = exact_table(device.device_id, space_name, directories)
    if exact is not None:
        return exact
    here, candidates = device.fingerprint(), []
    for directory in directories:
        for path in sorted(Path(directory).glob("*.json")):
            try:
                data = json.loads(path.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                continue
            if (isinstance(data, dict) and data.get("format") == FORMAT
                    and data.get("device", {}).get("name") == device_name
                    and data.get("space", {}).get("name") == space_name):
                recorded = data["device"].get("fingerprint", {})
                likeness = sum(weight for f, weight in CLOSEST_BY.items() if recorded.get(f) == here.get(f))
                candidates.append((-likeness, len(candidates), path))
    if candidates:  # the closest machine class: same instruction set first, then vendor and model
        return min(candidates)[2]
    raise PredictnasError(f"no latency table for device {device_name!r} and space {space_name!r}; "
                          f"build one with predictnas build-lut --device {device_name} --space {space_name}, or pass --lut")
