"""Latency model: devices (fingerprint, timing protocol), table build, calibration, vectorized estimates.

Light to import: the estimator and the table need numpy only; building a table (torch, ONNX Runtime)
lives in :mod:`predictnas.latency.build`, imported by whoever builds.
"""

from .calibration import Calibration, fidelity, retest_agreement
from .devices import DEVICES, Device, DeviceMismatch, OrtCpuDevice, fingerprint_mismatch, get_device, register_device
from .estimate import LatencyEstimator
from .keys import Frames, Key, arch_keys, enumerate_keys
from .protocol import PROTOCOLS, Measurement, Protocol, Protocols
from .table import SCHEMA_VERSION, Entry, LatencyTable, MissingEntry, default_table_path, find_table

__all__ = [
    "Calibration", "DEVICES", "Device", "DeviceMismatch", "Entry", "Frames", "Key", "LatencyEstimator", "LatencyTable",
    "Measurement", "MissingEntry", "OrtCpuDevice", "PROTOCOLS", "Protocol", "Protocols", "SCHEMA_VERSION", "arch_keys",
    "default_table_path", "enumerate_keys", "fidelity", "find_table", "fingerprint_mismatch",
    "get_device", "register_device", "retest_agreement",
]
