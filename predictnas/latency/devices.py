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

FINGERPRINT_FIELDS = ("cpu_vendor", "cpu_family", "cpu_model_number", "cpu_stepping", "isa", "cache_kb", "cpu_model",
                      "cores", "threads", "ort_version", "provider", "dtype")
# Instruction-set extensions that change which kernels ONNX Runtime runs (and so every latency): two CPUs
# with one model name but different extensions (AMD EPYC with and without AVX-512) are different devices.
KERNEL_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
                "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve", "sve2")


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

        return {**cpu_identity(), "cores": os.cpu_count() or 0, "threads": self.threads,
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


def cpu_identity() -> dict[str, Any]:
    """What tells CPU generations apart: vendor, family / model / stepping, the kernel-relevant instruction
    set extensions, cache sizes and the model name (``/proc/cpuinfo`` and ``/sys`` on Linux; elsewhere what
    the platform reports, with the rest empty)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("vendor_id", "cpu family", "model", "stepping", "model name", "flags", "features",
                       "cpu implementer", "cpu part", "cpu variant") and key not in fields:
                fields[key] = value.strip()
            if not line.strip() and fields:
                break  # the first processor describes them all
    except OSError:
        pass
    flags = set((fields.get("flags") or fields.get("features") or "").split())
    return {"cpu_vendor": fields.get("vendor_id") or fields.get("cpu implementer") or platform.system(),
            "cpu_family": fields.get("cpu family") or fields.get("cpu variant") or "",
            "cpu_model_number": fields.get("model") or fields.get("cpu part") or "",
            "cpu_stepping": fields.get("stepping", ""),
            "isa": [flag for flag in KERNEL_FLAGS if flag in flags],
            "cache_kb": cache_sizes_kb(),
            "cpu_model": fields.get("model name") or platform.processor() or platform.machine() or "unknown"}


def cache_sizes_kb() -> dict[str, int]:
    """The first CPU's level-1 data and level-2 cache sizes (``L1d``, ``L2``), in KiB: per core, so fixed by
    the CPU model. The level-3 size a virtual machine reports is its host's slicing (480 MB on one CI
    machine), which would make two machines of one class look different."""
    sizes = {}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level, kind = (index / "level").read_text().strip(), (index / "type").read_text().strip()
            size = (index / "size").read_text().strip().upper()
        except OSError:
            continue
        if kind == "Instruction" or level not in ("1", "2"):
            continue
        number = int(re.sub(r"[^0-9]", "", size) or 0)
        sizes[f"L{level}{'d' if kind == 'Data' else ''}"] = number * (1024 if size.endswith("M") else 1)
    return sizes


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
    unrecorded = [f for f in fields if f not in recorded]
    diffs = [f"table has {f} {recorded.get(f)!r} here {current.get(f)!r}" for f in fields
             if f in recorded and recorded.get(f) != current.get(f)]
    if unrecorded:  # a table from before these fields were recorded cannot show it is this machine's
        diffs.append(f"the table records no {', '.join(unrecorded)} (made by an earlier predictnas)")
    if not diffs:
        return None
    return "measured on other hardware/software: " + "; ".join(diffs)
