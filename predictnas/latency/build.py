"""``build-lut``: measure every entry of a space on a device, calibrate on whole models, report fidelity.

Phases, in this order so the two timings of the held-out models are minutes apart:

1. the reference graph's nominal latency (what whole-model timings are normalized to);
2. held-out models, first timing;
3. every table entry (:func:`~predictnas.latency.keys.enumerate_keys`);
4. calibration models (other random subnets), timed end to end;
5. held-out models, second timing (test-retest: the noise floor of the fidelity figures);
6. the predicted fastest and slowest architectures of the space, timed: the space's measured span;
7. fit the calibration on (4), score it on the held-out models (mean of both timings), write the table.

Everything measured is saved atomically to ``<out stem>.partial.json`` every few items, so a killed
build resumes where it stopped; the finished table is written atomically and the partial file removed.
"""

from __future__ import annotations

import datetime
import itertools
import sys
import time
from dataclasses import asdict, astuple, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import __version__
from ..errors import PredictnasError
from ..io import read_json, write_json
from ..space import DEFAULT_SPACE, Arch, SearchSpace, get_space
from .calibration import Calibration, fidelity, fit, retest_agreement
from .devices import Device
from .estimate import LatencyEstimator, reference_frames
from .keys import Frames, Key, enumerate_keys, every_block
from .modules import entry_graph, null_graph, subnet_graph
from .protocol import PROTOCOLS, Graph, ModelTimer, measure
from .table import Entry, LatencyTable, default_table_path, exact_table, find_table

# The space spans about 60x in latency, so no length gives exactly 5-150 ms. At 24 s (2401 feature frames,
# 601 encoder frames) the slowest subnet stays near 150 ms (136 ms measured) and the fastest takes 2.2 ms
# on the 2-core CI machine with one thread (4 s gave 0.35-20 ms); predictnas/pretrained/lut/README.md has
# the measurements.
DEFAULT_INPUT_SECONDS = 24.0
PARTIAL_FORMAT = "predictnas-latency-table-partial"
SAVE_EVERY_S, SAVE_EVERY_ITEMS = 5.0, 5
MODEL_PHASES = ("heldout_first", "calibration", "heldout_second", "extremes")


@dataclass(frozen=True)
class BuildSettings:
    space: str = DEFAULT_SPACE.name
    input_seconds: float = DEFAULT_INPUT_SECONDS
    sample_rate: int = 16000
    calibration_models: int = 30
    heldout_models: int = 30
    protocols: str = "standard"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.protocols not in PROTOCOLS:
            raise PredictnasError(f"unknown protocol {self.protocols!r}; known: {', '.join(sorted(PROTOCOLS))}")
        if self.input_seconds <= 0 or self.calibration_models < 3 or self.heldout_models < 2:
            raise PredictnasError("build-lut needs input seconds > 0, at least 3 calibration and 2 held-out models")


def partial_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}.partial.json")


def build_lut(device: Device, settings: BuildSettings, out: str | Path, progress: bool = True,
              command: str = "", log: Callable[[str], None] | None = None) -> LatencyTable:
    """Build (or resume building) the table of ``settings.space`` on ``device`` and write it to ``out``."""
    log = log or (lambda message: print(message, file=sys.stderr))
    out = Path(out)
    space = get_space(settings.space)
    frames = reference_frames(settings.input_seconds, settings.sample_rate)
    if frames.reduced < 1 or frames.input < 8:
        raise PredictnasError(f"--input-seconds {settings.input_seconds:g}: too short for the model (8 frames at least)")
    protocols = PROTOCOLS[settings.protocols]
    state = _State.open(partial_path(out), device, settings, frames, log)

    keys = enumerate_keys(space.config, frames)
    calibration_archs, heldout_archs = _sample_models(space, settings)
    work = {"heldout_first": heldout_archs, "calibration": calibration_archs, "heldout_second": heldout_archs}
    todo = (sum(k not in state.entries for k in keys)
            + sum(len(archs) - len(state.models[phase]) for phase, archs in work.items()))  # + 2 extremes, later
    timer = ModelTimer(device, protocols, state.reference_ms)
    reference = timer.reference
    if state.reference_ms is None:
        state.reference_ms = timer.reference_ms
        state.save(force=True)

    from tqdm import tqdm

    with tqdm(total=todo, desc=f"build-lut {device.name}", unit="graph", disable=not progress, file=sys.stderr,
              dynamic_ncols=True) as bar:
        def time_models(phase: str) -> None:
            bar.set_postfix_str(phase.replace("_", " "))
            for arch in work[phase][len(state.models[phase]):]:
                graph = subnet_graph(arch, space.config, frames.input)
                m = timer.time(graph)
                state.models[phase].append({"arch": arch.to_dict(), "arch_id": arch.arch_id, "params": graph.params,
                                            "measurement": m.to_dict(), "attempt": state.attempt})
                bar.update()
                state.save()

        time_models("heldout_first")
        bar.set_postfix_str("entries")
        nulls: dict[tuple, Graph] = {}
        scale = 1.0
        for i, key in enumerate(k for k in keys if k not in state.entries):
            if protocols.normalize and i % protocols.rescale_every == 0:
                scale = state.reference_ms / reference.nominal_ms(max(protocols.reference_runs // 10, 3))
            graph = entry_graph(key, space.config)
            signature = tuple((n, a.shape) for n, a in graph.feeds.items())
            null = nulls.setdefault(signature, null_graph(graph.feeds))
            m = measure(device, Graph(device.prepare(graph.model), graph.feeds), protocols.entry, baseline=null)
            state.entries[key] = Entry(key, replace(m, ms=m.ms * scale), graph.params, state.attempt, scale)
            bar.update()
            state.save()
        time_models("calibration")
        time_models("heldout_second")
        table = _finish(state, device, space, settings, frames, protocols.to_dict(), command)
        work["extremes"] = extremes(LatencyEstimator(table, space))
        bar.total += len(work["extremes"]) - len(state.models["extremes"])
        time_models("extremes")
        state.save(force=True)

    table = _finish(state, device, space, settings, frames, protocols.to_dict(), command)
    table.save(out)
    partial_path(out).unlink(missing_ok=True)
    return table


def table_for_this_machine(device: Device, settings: BuildSettings, directory: Path | None = None,
                           progress: bool = True, log: Callable[[str], None] | None = None) -> Path:
    """The path of ``device``'s table of ``settings.space`` for this machine's fingerprint: measured here
    before or shipped, else built first into ``directory`` (default: the user cache, where ``build-lut``
    writes), also when only a partial build is there.

    Why: latencies measured on another machine class do not hold here, and verify refuses their
    fingerprint; ``predictnas run`` measures once per device.
    """
    log = log or (lambda message: print(message, file=sys.stderr))
    out = default_table_path(device.device_id, settings.space, directory)
    found = exact_table(device.device_id, settings.space, None if directory is None else [directory])
    if found is not None:
        return found
    try:
        other = find_table(device.name, settings.space, None if directory is None else [directory])
    except PredictnasError:
        other = None
    if other is not None and not partial_path(out).exists():  # a full build already under way goes on
        from .adapt import adapt_table

        log(f"no latency table of {device.name} measured on this machine ({device.device_id}): adapting {other} "
            f"to it into {out.parent} (build-lut --adapt-from; about 3 minutes; build-lut measures every entry)")
        adapt_table(LatencyTable.load(other), device, out, progress=progress, log=log,
                    command=f"predictnas build-lut --device {device.name} --adapt-from {other}")
        return out
    log(f"no latency table of {device.name} measured on this machine ({device.device_id}): building it into "
        f"{out.parent} (build-lut; several minutes, resumable)")
    build_lut(device, settings, out, progress=progress, log=log,
              command=f"predictnas build-lut --device {device.name} --space {settings.space}")
    return out


def _sample_models(space: SearchSpace, settings: BuildSettings) -> tuple[list[Arch], list[Arch]]:
    """Distinct random subnets: the first ones calibrate, the others are held out (seeded, so a resumed
    build times the same models)."""
    rng = np.random.default_rng(settings.seed)
    need = settings.calibration_models + settings.heldout_models
    archs: dict[str, Arch] = {}
    while len(archs) < need:
        for genes in space.sample(2 * need, rng):
            arch = space.decode(genes)
            archs.setdefault(arch.arch_id, arch)
    chosen = list(archs.values())[:need]
    return chosen[:settings.calibration_models], chosen[settings.calibration_models:]


def extremes(estimator: LatencyEstimator, n_random: int = 200_000) -> list[Arch]:
    """The predicted fastest and slowest architectures: searched over random ones and over every
    "uniform" one (one block configuration repeated, at the smallest and largest depth), where additive
    costs put the extremes."""
    space, c = estimator.space, estimator.space.config
    blocks = np.array([[choices.index(v) if v is not None else 0 for v, choices in
                        zip(astuple(b), space.block_choices)] for b in every_block(c)], dtype=np.int8)
    depth_genes = sorted({0, len(c.depths) - 1})
    grid = np.array(list(itertools.product(
        range(len(c.frontend_kernels)), range(len(c.frontend_kinds)), range(len(c.widths)), depth_genes,
        range(len(c.connectivities)), (0, 1))), dtype=np.int8)
    genes = np.zeros((len(grid) * len(blocks), space.n_genes), dtype=np.int8)
    genes[:, :space.n_global] = np.repeat(grid, len(blocks), axis=0)
    genes[:, space.n_global:] = np.tile(np.tile(blocks, (1, c.max_depth)), (len(grid), 1))
    genes[~space.meaningful(genes)] = 0
    genes = np.concatenate([genes[space.validate(genes)], space.sample(n_random, np.random.default_rng(0))])
    latency = estimator.estimate(genes)
    return [space.decode(genes[np.argmin(latency)]), space.decode(genes[np.argmax(latency)])]


def _finish(state: "_State", device: Device, space: SearchSpace, settings: BuildSettings, frames: Frames,
            protocol: dict[str, Any], command: str) -> LatencyTable:
    fingerprint = device.fingerprint()
    table = LatencyTable(
        device={"name": device.name, "id": device.device_id, "fingerprint": fingerprint}, space=space.config,
        input_seconds=settings.input_seconds, frames=frames, protocol=protocol, reference_ms=state.reference_ms,
        entries=dict(state.entries), calibration=Calibration())
    raw = LatencyEstimator(table, space)

    rows = lambda records: raw.calibration_inputs([space.from_json(r["arch"]) for r in records])  # noqa: E731
    ms = lambda records: np.array([r["measurement"]["ms"] for r in records])  # noqa: E731
    first, cal, second = (state.models[p] for p in MODEL_PHASES[:3])
    cal_raw, cal_w = rows(cal)
    calibration = fit(cal_raw, cal_w, ms(cal))
    held_raw, held_w = rows(first)
    held_measured = (ms(first) + ms(second)) / 2
    held_predicted = calibration.apply(held_raw, held_w)
    for record, raw_ms, w, predicted in zip(first, held_raw, held_w, held_predicted):
        record.update(raw_ms=round(float(raw_ms), 6), weight_bytes=int(w), predicted_ms=round(float(predicted), 6))
    for record, raw_ms, w in zip(cal, cal_raw, cal_w):
        record.update(raw_ms=round(float(raw_ms), 6), weight_bytes=int(w),
                      predicted_ms=round(float(calibration.apply(raw_ms, w)), 6))
    all_measured = np.concatenate([ms(cal), held_measured])
    accuracy = {
        "heldout": fidelity(held_predicted, held_measured),
        "heldout_raw_sum": fidelity(held_raw, held_measured),
        "calibration_fit": fidelity(calibration.apply(cal_raw, cal_w), ms(cal)),
        "test_retest": retest_agreement(ms(first), ms(second)),
        "test_retest_unnormalized": retest_agreement(*(np.array([r["measurement"]["median_ms"] for r in records])
                                                       for records in (first, second))),
        "measured_range_ms": [float(all_measured.min()), float(all_measured.max())],
    }
    estimator = LatencyEstimator(replace(table, calibration=calibration), space)
    estimates = estimator.estimate(space.sample(100_000, np.random.default_rng(settings.seed + 1)))
    accuracy["random_subnets_estimate_ms"] = {f"p{q}": float(np.percentile(estimates, q)) for q in (0, 1, 50, 99, 100)}
    extreme = state.models["extremes"]
    for record in extreme:
        record["predicted_ms"] = round(estimator.estimate_arch(space.from_json(record["arch"])), 6)
    if len(extreme) == 2:
        accuracy["space_span_ms"] = {"fastest": {k: extreme[0][k] for k in ("arch_id", "predicted_ms")} | {
            "measured_ms": extreme[0]["measurement"]["ms"]}, "slowest": {k: extreme[1][k] for k in (
                "arch_id", "predicted_ms")} | {"measured_ms": extreme[1]["measurement"]["ms"]}}
    return replace(
        table, calibration=calibration, accuracy=accuracy,
        models={"calibration": cal, "heldout": [{**r, "second": s["measurement"]} for r, s in zip(first, second)],
                "extremes": extreme},
        build={"command": command, "seconds": round(state.elapsed(), 1), "attempts": state.attempt + 1,
               "created": utc_now(), "predictnas": __version__, "settings": asdict(settings)})


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class _State:
    """What a build has measured so far, saved atomically beside the output."""

    def __init__(self, path: Path, header: dict[str, Any]):
        self.path, self.header = path, header
        self.attempt, self.elapsed_before = 0, 0.0
        self.reference_ms: float | None = None
        self.entries: dict[Key, Entry] = {}
        self.models: dict[str, list[dict]] = {p: [] for p in MODEL_PHASES}
        self.started = self.last_save = time.monotonic()
        self.unsaved = 0

    @classmethod
    def open(cls, path: Path, device: Device, settings: BuildSettings, frames: Frames, log) -> "_State":
        header = {"device": {"name": device.name, "id": device.device_id}, "settings": asdict(settings),
                  "frames": frames.input}
        state = cls(path, header)
        if not path.exists():
            return state
        data = read_json(path)
        if not isinstance(data, dict) or data.get("format") != PARTIAL_FORMAT:
            raise PredictnasError(f"{path}: not a partial latency-table build; delete it to start afresh")
        if data.get("header") != header:
            raise PredictnasError(f"{path}: a partial build with other settings or another device "
                                  f"({data.get('header')}); delete it or rerun with the same options")
        try:
            state.attempt = int(data["attempts"])
            state.elapsed_before = float(data["elapsed_s"])
            state.reference_ms = data["reference_ms"]
            state.entries = {e.key: e for e in map(Entry.from_dict, data["entries"])}
            state.models = {p: list(data["models"][p]) for p in MODEL_PHASES}
        except (KeyError, TypeError, ValueError, PredictnasError) as e:
            raise PredictnasError(f"{path}: malformed partial build ({e}); delete it to start afresh") from None
        log(f"resuming {path}: {len(state.entries)} entries and "
            f"{sum(map(len, state.models.values()))} model timings already measured")
        return state

    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.started

    def save(self, force: bool = False) -> None:
        now, self.unsaved = time.monotonic(), self.unsaved + 1
        if not force and now - self.last_save < SAVE_EVERY_S and self.unsaved < SAVE_EVERY_ITEMS:
            return
        write_json(self.path, {
            "format": PARTIAL_FORMAT, "header": self.header, "attempts": self.attempt + 1,
            "elapsed_s": self.elapsed(), "reference_ms": self.reference_ms,
            "entries": [e.to_dict() for e in self.entries.values()], "models": self.models})
        self.last_save, self.unsaved = now, 0
