"""The timing protocol: warm-up, repeated runs over several fresh sessions, medians, noise checks.

Each measurement takes the median over ``sessions`` fresh sessions (a new session re-plans memory,
one source of between-run bias), and measures again, pooling, while the spread is above ``max_cv``.
Table entries are timed alternately with a graph that takes the same inputs and only reads their shapes,
and the entry is the median *difference*: the per-run overhead of a session (paid once by a whole model,
not once per module) stays out of the table.

The host drifts: in one build on a quiet machine, plain medians of the same models rose 5 % within
four minutes (calibration models 9 % above the table, held-out ones 0-4 %), enough to bias a fit.
With ``Protocols.normalize`` (the default) a fixed reference graph is timed, warmed up, just before
and after every session of a whole model, and the model's runs are scaled by
``nominal reference latency / reference now``, where *now* is the median of every bracketing run of
the measurement pooled: drift within one measurement (a second or two) is negligible. Against each
session scaled by its own 14 runs, pooling lowered the robust CV of 8 timings of 6 models from 1.9 to
1.6 % (unnormalized: 2.8 %; ``tools/bench_timing_noise.py``): what remains is the model's own runs, so
verify and the search still take the median of 3 timings. Table entries are rescaled the same way every
few entries. The reference is small and compute-bound on purpose: interleaving a weight-heavy reference
run by run (ABAB) was tried first and under-stated a model with 33 MB of weights by a third (87 ms
against 135 ms plain): the model evicted the reference's weights between runs, so the reference ran
slow exactly when the model was large. With the bracketed reference, 30 held-out models timed twice
agreed within +-10 % for 100 % of them (MAPE 2.0 %), against 97 % (3.2 %) for their plain medians.
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .devices import Device


@dataclass(frozen=True)
class Graph:
    """An ONNX model (bytes) and the inputs to time it with."""

    model: bytes
    feeds: dict[str, np.ndarray]
    params: int = 0  # parameters of the module (fp32 weights = 4 bytes each)


@dataclass(frozen=True)
class Protocol:
    """How one graph is timed."""

    warmup: int = 5  # untimed runs per session (allocations, caches, thread start-up)
    min_runs: int = 10  # timed runs per session, at least...
    max_runs: int = 50  # ...and at most; in between, until ``seconds`` have passed
    seconds: float = 0.2
    sessions: int = 3  # fresh sessions; the result is the median of their medians
    max_cv: float = 0.05  # above this robust spread, measure again (pooling)...
    retries: int = 2  # ...at most this many times


@dataclass(frozen=True)
class Protocols:
    """A named set: how entries are timed, how whole models are, and how long the reference is."""

    name: str
    entry: Protocol
    model: Protocol
    reference_runs: int = 200  # runs of the reference alone for its nominal latency
    normalize: bool = True  # scale models and entries by the reference's drift (see the module docstring)
    rescale_every: int = 10  # entries between two checks of the reference's drift
    speed_probe: bool = True  # a table's users time the reference against its reference_ms (hardware gap)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "entry": asdict(self.entry), "model": asdict(self.model)}


PROTOCOLS: dict[str, Protocols] = {}


def register_protocols(protocols: Protocols) -> Protocols:
    PROTOCOLS[protocols.name] = protocols
    return protocols


_ENTRY = Protocol(warmup=5, min_runs=15, max_runs=60, seconds=0.1, sessions=3, max_cv=0.1, retries=2)
_MODEL = Protocol(warmup=2, min_runs=5, max_runs=15, seconds=0.4, sessions=3, max_cv=0.05, retries=2)
register_protocols(Protocols("standard", entry=_ENTRY, model=_MODEL, normalize=True))
register_protocols(Protocols("plain", entry=_ENTRY, model=_MODEL, normalize=False))
# For tests and smoke runs: every number is a measurement, none is trustworthy.
register_protocols(Protocols(
    "quick",
    entry=Protocol(warmup=1, min_runs=3, max_runs=5, seconds=0.0, sessions=1, max_cv=1.0, retries=0),
    model=Protocol(warmup=1, min_runs=3, max_runs=3, seconds=0.0, sessions=1, max_cv=1.0, retries=0),
    reference_runs=10, speed_probe=False,
))


@dataclass(frozen=True)
class Measurement:
    """One timed graph. ``ms`` is the value to use (net of overhead, or reference-normalized);
    ``median_ms`` / ``p90_ms`` are the graph's own run times; ``cv`` is their robust spread."""

    ms: float
    median_ms: float
    p90_ms: float
    cv: float
    runs: int
    sessions: int

    def to_dict(self) -> dict[str, float]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Measurement":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


REFERENCE_BLOCK = 7  # reference runs timed before and after each session of a model


class Reference:
    """The fixed graph models are normalized by, with its session kept warm across measurements."""

    def __init__(self, device: Device, graph: Graph):
        self.graph, self.session = graph, device.session(graph.model)
        for _ in range(3):
            self.session.run(None, graph.feeds)

    def runs_ms(self, runs: int, warmup: int = 2) -> np.ndarray:
        """``runs`` latencies of the reference alone (ms), after ``warmup`` runs that bring its weights back
        into cache (whatever ran before may have evicted them)."""
        for _ in range(warmup):
            self.session.run(None, self.graph.feeds)
        return np.array([_time_once(self.session, self.graph.feeds) for _ in range(runs)]) * 1e3

    def nominal_ms(self, runs: int, warmup: int = 2) -> float:
        """Median latency of the reference alone over ``runs`` runs."""
        return float(np.median(self.runs_ms(runs, warmup)))


@functools.lru_cache(maxsize=None)
def reference_now_ms(device_name: str, runs: int) -> float:
    """The reference graph's nominal latency on this machine now (once per process and device)."""
    from .devices import get_device

    return Reference(get_device(device_name), reference_graph()).nominal_ms(runs)


def reference_graph(frames: int = 512, width: int = 256, hidden: int = 512, layers: int = 1) -> Graph:
    """A fixed MLP, compute-bound and cache-resident (1 MB of fp32 weights, about 2 ms): it tracks how fast
    the host runs right now, not what the previous graph left in the cache."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from ..supernet.export import OPSET

    rng = np.random.default_rng(7)
    nodes, inits, x = [], [], "x"
    for i in range(layers):
        for j, (a, b) in enumerate(((width, hidden), (hidden, width))):
            w = f"w{i}_{j}"
            inits.append(numpy_helper.from_array((rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32), w))
            nodes.append(helper.make_node("MatMul", [x, w], [f"{w}_out"]))
            x = f"{w}_out"
            if j == 0:
                nodes.append(helper.make_node("Relu", [x], [f"{w}_relu"]))
                x = f"{w}_relu"
    nodes.append(helper.make_node("Identity", [x], ["y"]))
    graph = helper.make_graph(nodes, "reference", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, frames, width])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, frames, width])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = min(model.ir_version, 10)
    onnx.checker.check_model(model)
    feeds = {"x": rng.standard_normal((1, frames, width)).astype(np.float32)}
    return Graph(model.SerializeToString(), feeds)


def _time_once(session, feeds) -> float:
    start = time.perf_counter()
    session.run(None, feeds)
    return time.perf_counter() - start


def _robust_cv(values: np.ndarray) -> float:
    median = float(np.median(values))
    return float(1.4826 * np.median(np.abs(values - median)) / median) if median > 0 else float("inf")


def measure(device: Device, graph: Graph, protocol: Protocol, *, baseline: Graph | None = None,
            reference: Reference | None = None, reference_ms: float | None = None) -> Measurement:
    """Time a prepared graph with the protocol.

    ``baseline``: interleave runs of this graph and report the median difference (table entries).
    ``reference`` with ``reference_ms``: time the reference (warmed up) just before and just after each
    session and scale the runs by ``reference_ms / reference now``, *now* the median of all bracketing
    runs (whole models). Neither: the plain median.
    """
    partner = None
    if baseline is not None:
        partner = (device.session(baseline.model), baseline.feeds)
    times, partner_times, session_ids, brackets = [], [], [], []
    n_sessions = 0
    for attempt in range(protocol.retries + 1):
        for _ in range(protocol.sessions):
            if reference is not None:
                brackets.append(reference.runs_ms(REFERENCE_BLOCK))
            t, p = _time_session(device, graph, protocol, partner)
            if reference is not None:
                brackets.append(reference.runs_ms(REFERENCE_BLOCK))
            times.append(t)
            partner_times.append(p)
            session_ids.append(np.full(len(t), n_sessions))
            n_sessions += 1
        t_all, p_all, ids = np.concatenate(times), np.concatenate(partner_times), np.concatenate(session_ids)
        if baseline is not None:
            values, noise = t_all - p_all, t_all
        elif reference is not None:
            values = noise = t_all * ((reference_ms or 0.0) / float(np.median(np.concatenate(brackets))))
        else:
            values = noise = t_all
        session_medians = np.array([np.median(values[ids == s]) for s in range(n_sessions)])
        noise_medians = np.array([np.median(noise[ids == s]) for s in range(n_sessions)])
        spread = float(np.ptp(noise_medians) / np.median(noise_medians)) if n_sessions > 1 else 0.0
        cv = _robust_cv(noise)
        if max(cv, spread) <= protocol.max_cv:
            break
    return Measurement(
        ms=max(float(np.median(session_medians)), 0.0) * 1e3, median_ms=float(np.median(t_all)) * 1e3,
        p90_ms=float(np.percentile(values if reference is not None else t_all, 90)) * 1e3, cv=cv,
        runs=len(t_all), sessions=n_sessions)


def _time_session(device: Device, graph: Graph, protocol: Protocol, partner) -> tuple[np.ndarray, np.ndarray]:
    session = device.session(graph.model)
    for _ in range(protocol.warmup):
        session.run(None, graph.feeds)
        if partner is not None:
            partner[0].run(None, partner[1])
    times, partner_times = [], []
    start = time.perf_counter()
    while len(times) < protocol.max_runs and (len(times) < protocol.min_runs
                                               or time.perf_counter() - start < protocol.seconds):
        times.append(_time_once(session, graph.feeds))
        partner_times.append(_time_once(*partner) if partner is not None else 0.0)
    return np.array(times), np.array(partner_times)


class ModelTimer:
    """Whole models timed with a protocol set's model protocol on ``device``. With a normalizing set, each
    session is bracketed by the reference and scaled to ``reference_ms``: the nominal reference latency of
    the table the timings will be compared with (measured now when not given, as a table build does)."""

    def __init__(self, device: Device, protocols: Protocols, reference_ms: float | None = None,
                 reference: Reference | None = None):
        self.device, self.protocols = device, protocols
        self.reference = reference or Reference(device, reference_graph())
        self.reference_ms = reference_ms if reference_ms is not None else self.reference.nominal_ms(protocols.reference_runs)

    def time(self, graph: Graph, prepared: bool = False) -> Measurement:
        """``graph`` as exported (``prepared``: already in the device's format, e.g. quantized)."""
        model = graph.model if prepared else self.device.prepare(graph.model)
        normalized = {"reference": self.reference, "reference_ms": self.reference_ms} if self.protocols.normalize else {}
        return measure(self.device, Graph(model, graph.feeds), self.protocols.model, **normalized)
