"""``build-lut --adapt-from TABLE``: a table for this machine in minutes, from a table of another one.

Measured across machine classes, the per-entry structure of a table transfers (its sums rank models here
at Spearman 0.998) and the absolute scale does not (measured / predicted 0.50-0.63 on a CPU with AVX-512
from a table built without). So adapting keeps every entry of the source table and measures only what
changes: this machine's reference graph, ``models`` whole subnets spread over the source's latency range,
timed here end to end with the source's protocol, and the calibration refitted on them. ``heldout`` other
random subnets, timed here too, give the new table its own accuracy report. A full ``build-lut`` remains
for users who want every entry measured here.

Resumable like a full build: every timing is saved to ``<out stem>.adapting.json`` as it is taken.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from .. import __version__
from ..errors import PredictnasError
from ..io import read_json, write_json
from ..space import Arch, SearchSpace
from .build import utc_now
from .calibration import Calibration, fidelity, fit
from .devices import Device
from .estimate import LatencyEstimator
from .protocol import PROTOCOLS, ModelTimer
from .table import LatencyTable

PARTIAL_FORMAT = "predictnas-latency-table-adaptation"
DEFAULT_MODELS, DEFAULT_HELDOUT = 12, 20


def adapt_table(source: LatencyTable, device: Device, out: str | Path, models: int = DEFAULT_MODELS,
                heldout: int = DEFAULT_HELDOUT, seed: int = 0, progress: bool = True, command: str = "",
                log: Callable[[str], None] | None = None) -> LatencyTable:
    """The table of ``source``'s space for ``device`` on this machine, written to ``out``."""
    log = log or (lambda message: print(message, file=sys.stderr))
    if models < 3 or heldout < 2:
        raise PredictnasError("adapting a table needs at least 3 calibration and 2 held-out models")
    protocols = PROTOCOLS.get(source.protocol.get("name", ""))
    if protocols is None:
        raise PredictnasError(f"{source.source}: timed with protocol {source.protocol.get('name')!r}, unknown here")
    if source.device["name"].split(":")[0] != device.name.split(":")[0]:
        raise PredictnasError(f"{source.source} is a table of device {source.device['name']!r}, not {device.name!r}")
    out = Path(out)
    space = SearchSpace(source.space)
    uncalibrated = LatencyEstimator(replace(source, calibration=Calibration()), space)
    calibration_archs, heldout_archs = spread_sample(space, uncalibrated, models, heldout, seed)
    partial = out.with_name(f"{out.stem}.adapting.json")
    header = {"source": source.content_hash, "device": device.device_id, "models": models, "heldout": heldout,
              "seed": seed}
    state = _resume(partial, header, log)
    started = time.monotonic() - state["elapsed_s"]
    timer = ModelTimer(device, protocols, state["reference_ms"])
    state["reference_ms"] = timer.reference_ms

    from tqdm import tqdm

    from .modules import subnet_graph  # torch and the exporter, only when something is timed

    work = {"calibration": calibration_archs, "heldout": heldout_archs}
    todo = sum(len(archs) - len(state["models"][phase]) for phase, archs in work.items())
    with tqdm(total=todo, desc=f"adapt {device.name}", unit="model", disable=not progress, file=sys.stderr,
              dynamic_ncols=True) as bar:
        for phase, archs in work.items():
            for arch in archs[len(state["models"][phase]):]:
                began = time.monotonic()
                graph = subnet_graph(arch, space.config, source.frames.input)
                state["models"][phase].append({"arch": arch.to_dict(), "arch_id": arch.arch_id, "params": graph.params,
                                               "measurement": timer.time(graph).to_dict()})
                state["phase_seconds"][phase] += time.monotonic() - began
                state["elapsed_s"] = time.monotonic() - started
                write_json(partial, state)
                bar.update()

    def rows(records: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raw_ms, weight_bytes = uncalibrated.calibration_inputs([space.from_json(r["arch"]) for r in records])
        return raw_ms, weight_bytes, np.array([r["measurement"]["ms"] for r in records])

    cal_raw, cal_w, cal_ms = rows(state["models"]["calibration"])
    calibration = fit(cal_raw, cal_w, cal_ms)
    held_raw, held_w, held_ms = rows(state["models"]["heldout"])
    source_estimate = LatencyEstimator(source, space)
    accuracy = {
        "heldout": fidelity(calibration.apply(held_raw, held_w), held_ms),
        "heldout_source_calibration": fidelity(
            np.array([source_estimate.estimate_arch(space.from_json(r["arch"])) for r in state["models"]["heldout"]]),
            held_ms),
        "calibration_fit": fidelity(calibration.apply(cal_raw, cal_w), cal_ms),
        "measured_range_ms": [float(min(cal_ms.min(), held_ms.min())), float(max(cal_ms.max(), held_ms.max()))],
        "reference_ratio": state["reference_ms"] / source.reference_ms,
    }
    table = replace(
        source, device={"name": device.name, "id": device.device_id, "fingerprint": device.fingerprint()},
        reference_ms=state["reference_ms"], calibration=calibration, accuracy=accuracy,
        models={phase: records for phase, records in state["models"].items()},
        build={"command": command, "seconds": round(time.monotonic() - started, 1), "created": utc_now(),
               "phase_seconds": {phase: round(seconds, 1) for phase, seconds in state["phase_seconds"].items()},
               "predictnas": __version__, "adapted_from": {"id": source.device_id, "hash": source.content_hash,
                                                           "fingerprint": source.device["fingerprint"],
                                                           "source": source.source},
               "settings": {"models": models, "heldout": heldout, "seed": seed}},
        source=str(out))
    table.save(out)
    partial.unlink(missing_ok=True)
    return table


def spread_sample(space: SearchSpace, estimator: LatencyEstimator, models: int, heldout: int,
                  seed: int) -> tuple[list[Arch], list[Arch]]:
    """Calibration subnets at evenly spaced quantiles of the source's latency estimate over a random pool (a
    line fitted on few points needs both ends), and distinct random held-out subnets (seeded, so a resumed
    adaptation times the same models)."""
    pool = space.sample(4000, np.random.default_rng(seed))
    order = np.argsort(estimator.estimate(pool))
    picks = order[np.linspace(0, len(order) - 1, models).round().astype(int)]
    chosen = {space.decode(pool[i]).arch_id: space.decode(pool[i]) for i in picks}
    held: dict[str, Arch] = {}
    rng = np.random.default_rng(seed + 1)
    while len(held) < heldout:
        for genes in space.sample(heldout, rng):
            arch = space.decode(genes)
            if arch.arch_id not in chosen and len(held) < heldout:
                held.setdefault(arch.arch_id, arch)
    return list(chosen.values()), list(held.values())


def _resume(partial: Path, header: dict, log: Callable[[str], None]) -> dict:
    fresh = {"format": PARTIAL_FORMAT, "header": header, "reference_ms": None, "elapsed_s": 0.0,
             "phase_seconds": {"calibration": 0.0, "heldout": 0.0}, "models": {"calibration": [], "heldout": []}}
    if not partial.exists():
        return fresh
    data = read_json(partial)
    if not isinstance(data, dict) or data.get("format") != PARTIAL_FORMAT or data.get("header") != header:
        raise PredictnasError(f"{partial}: a partial adaptation with other settings or from another table; delete "
                              "it or rerun with the same options")
    log(f"resuming {partial}: {sum(map(len, data['models'].values()))} models already timed")
    return {**fresh, **data}
