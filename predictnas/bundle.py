"""``top.json``: the search's answer as a bundle, everything needed to rebuild, run and check each pick.

Like a torchaudio pipeline bundle, the facts a model needs travel with it: the architecture (and its
id), the search space it lives in, the sample rate and feature settings it was trained on, the
decoder its WERs were predicted for, the reference input its latency refers to, the device fingerprint and the hashes of the latency table and
the predictor that scored it, the supernet whose weights it inherits, its predicted WER / latency /
params / memory and reward, and how the search ran. ``verify`` reads nothing else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from .artifact import Artifact
from .errors import PredictnasError
from .space import Arch, SearchSpace, SpaceConfig

FORMAT = "predictnas-top/1"


@dataclass(frozen=True)
class Candidate:
    rank: int
    arch: Arch
    predicted: dict[str, float]  # wer, latency_ms, params, memory_bytes, reward

    def to_dict(self) -> dict:
        return {"rank": self.rank, "arch_id": self.arch.arch_id, "arch": self.arch.to_dict(), "predicted": self.predicted}


@dataclass(frozen=True)
class Bundle(Artifact):
    FORMAT: ClassVar[str] = FORMAT
    KIND: ClassVar[str] = "top.json"

    space: SpaceConfig
    candidates: tuple[Candidate, ...]
    model: dict[str, Any]  # sample_rate, features, intents, supernet {path, hash}, decoder (its spec; None: greedy)
    reference_input: dict[str, Any]  # seconds, frames
    device: dict[str, Any]  # id, name, fingerprint
    lut: dict[str, Any]  # path, hash
    predictor: dict[str, Any]  # path, hash, target, data_hash
    objective: dict[str, Any]  # mode, lambda, budget_ms, soft budgets, environment
    search: dict[str, Any]  # candidates scored, generations, seconds, seed, command

    def to_dict(self) -> dict:
        return {"format": FORMAT, "space": self.space.to_dict(), "model": self.model,
                "reference_input": self.reference_input, "device": self.device, "lut": self.lut,
                "predictor": self.predictor, "objective": self.objective, "search": self.search,
                "candidates": [c.to_dict() for c in self.candidates]}

    @classmethod
    def from_dict(cls, data: dict, source: str) -> "Bundle":
        space = SearchSpace(SpaceConfig.from_dict(data["space"]))
        candidates = []
        for i, c in enumerate(data["candidates"]):
            arch = space.from_json(c["arch"], source=f"{source}: candidates[{i}]")
            if c.get("arch_id") not in (None, arch.arch_id):
                raise PredictnasError(f"{source}: candidates[{i}]: arch_id {c['arch_id']} does not match its "
                                      f"architecture ({arch.arch_id}); the file was edited")
            candidates.append(Candidate(int(c["rank"]), arch, {k: float(v) for k, v in c["predicted"].items()}))
        bundle = cls(space.config, tuple(candidates), data["model"], data["reference_input"], data["device"],
                     data["lut"], data["predictor"], data["objective"], data["search"])
        if not bundle.candidates:
            raise PredictnasError(f"{source}: no candidates")
        seen: dict[str, int] = {}
        for c in bundle.candidates:
            if c.arch.arch_id in seen:  # a search writes each architecture once
                raise PredictnasError(f"{source}: candidates {seen[c.arch.arch_id]} and {c.rank} are the same "
                                      f"architecture ({c.arch.arch_id}); the file was edited")
            seen[c.arch.arch_id] = c.rank
            if not all(math.isfinite(v) for v in c.predicted.values()):
                raise PredictnasError(f"{source}: candidate {c.rank} has a non-finite prediction ({c.predicted})")
        return bundle
