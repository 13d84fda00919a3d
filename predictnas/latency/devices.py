"""Devices: backends that prepare and time ONNX graphs, registered by name, with a hardware fingerprint.

Names: ``cpu`` (ONNX Runtime CPU provider, one intra-op thread), ``cpu:N`` (N threads), ``cpu-int8`` and
``cpu-int8:N`` (graphs dynamically quantized: MatMul / Gemm weights to int8; Conv stays fp32 because
``ConvInteger`` made models about 3x slower on this machine class).

Device id: ``<name without threads>-<threads>t-<dtype>-<8 hex digits>``, e.g. ``cpu-1t-fp32-1a2b3c4d``;
the hex digits are the start of the SHA-256 of the canonical JSON fingerprint, so the id is stable on
one machine and software stack and changes when any fingerprint field changes.
"""

from __future__ import annotations

import abc
import hashlib
import json
import os
import platform
import re
import tempfile
from pathlib import Path
from typing import Any, Callable

from ..errors import PredictnasError

FINGERPRINT_FIELDS = ("cpu_model", "cores", "threads", "ort_version", "provider", "dtype")


class DeviceMismatch(PredictnasError):
    """A latency table measured on other hardware or software than the current device."""


class Device(abc.ABC):
    """A backend that turns ONNX graphs into timed sessions.

    Contract:

    * ``name`` is the registered name it was created from; ``fingerprint()`` returns a JSON object with
      at least :data:`FINGERPRINT_FIELDS`, describing everything that decides latency; ``device_id``
      is derived from the fingerprint only, so two processes on one machine agree on it.
    * ``prepare(model)`` turns an fp32 graph (bytes) into the graph the device runs (bytes); it is
      deterministic and may be expensive (quantization): callers prepare once and time many times.
    * ``session(model)`` returns a fresh, independent session over prepared bytes, with
      ``run(None, feeds)``; every call re-plans memory, so protocols average over several sessions.
    """

    name: str

    @abc.abstractmethod
    def fingerprint(self) -> dict[str, Any]: ...

    @abc.abstractmethod
    def prepare(self, model: bytes) -> bytes: ...

    @abc.abstractmethod
    def session(self, model: bytes): ...

    @property
    def device_id(self) -> str:
        fp = self.fingerprint()
        digest = hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:8]
        base = self.name.split(":")[0].removesuffix("-int8")
        return f"{base}-{fp['threads']}t-{fp['dtype']}-{digest}"


class OrtCpuDevice(Device):
    """ONNX Runtime, CPU execution provider, ``threads`` intra-op threads, fp32 or dynamic int8."""

    def __init__(self, name: str, threads: int = 1, dtype: str = "fp32"):
        self.name, self.threads, self.dtype = name, threads, dtype

    def fingerprint(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {"cpu_model": cpu_model(), "cores": os.cpu_count() or 0, "threads": self.threads,
                "ort_version": ort.__version__, "provider": "CPUExecutionProvider", "dtype": self.dtype,
                "machine": platform.machine()}

    def prepare(self, model: bytes) -> bytes:
        if self.dtype == "fp32":
            return model
        import logging

        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        root = logging.getLogger()
        level = root.level
        root.setLevel(max(level, logging.ERROR))  # the quantizer logs pre-processing hints at WARNING
        try:
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "int8.onnx"
                quantize_dynamic(onnx.load_from_string(model), out, op_types_to_quantize=["MatMul", "Gemm"],
                                 weight_type=QuantType.QInt8)
                return out.read_bytes()
        finally:
            root.setLevel(level)

    def session(self, model: bytes):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what the platform reports)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


# ---- registry -------------------------------------------------------------------------------------

DEVICES: dict[str, Callable[[str, int], Device]] = {}


def register_device(prefix: str, factory: Callable[[str, int], Device]) -> None:
    """Register ``prefix`` (and ``prefix:N`` for N threads): ``factory(name, threads) -> Device``."""
    DEVICES[prefix] = factory


register_device("cpu", lambda name, threads: OrtCpuDevice(name, threads, "fp32"))
register_device("cpu-int8", lambda name, threads: OrtCpuDevice(name, threads, "int8"))


def get_device(name: str) -> Device:
    """The device registered as ``name`` (``cpu``, ``cpu:2``, ``cpu-int8``...), or a one-line error."""
    match = re.fullmatch(r"([a-z0-9-]+)(?::([0-9]+))?", name)
    if not match or match.group(1) not in DEVICES or (match.group(2) is not None and int(match.group(2)) < 1):
        known = ", ".join(f"{p}, {p}:N" for p in sorted(DEVICES))
        raise PredictnasError(f"unknown device {name!r}; known: {known} (N = intra-op threads)")
    threads = int(match.group(2) or 1)
    return DEVICES[match.group(1)](name, threads)


# ---- hardware gap guard -----------------------------------------------------------------------------


def fingerprint_mismatch(recorded: dict[str, Any], current: dict[str, Any]) -> str | None:
    """One line naming every fingerprint field that differs, or ``None`` if the machines match."""
    fields = sorted(set(recorded) | set(current), key=lambda f: (f not in FINGERPRINT_FIELDS, f))
    diffs = [f"{f} {recorded.get(f)!r} here {current.get(f)!r}" for f in fields if recorded.get(f) != current.get(f)]
    if not diffs:
        return None
    return "measured on other hardware/software: " + "; ".join(f"table has {d}" for d in diffs)


def check_device(recorded: dict[str, Any], device: Device, allow_mismatch: bool = False, source: str = "latency table"
                 ) -> str | None:
    """Compare a table's fingerprint with ``device`` on this machine.

    Returns ``None`` when they match; otherwise the mismatch description (for a loud warning) when
    ``allow_mismatch``, else raises :class:`DeviceMismatch` with it.
    """
    problem = fingerprint_mismatch(recorded, device.fingerprint())
    if problem is None:
        return None
    message = f"{source}: {problem}; its latencies may not hold on this machine"
    if not allow_mismatch:
        raise DeviceMismatch(message + " (rebuild it with build-lut, or allow the mismatch explicitly)")
    return message
