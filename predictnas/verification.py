"""``verify.json``: what ``verify`` measured, read back by ``calibrate``, ``run`` and the tools.

The document holds the settings verify ran with, the device and latency table, the search's record
(predictor, budget) and one entry per model (name, kind, architecture, measured and inherited WER per
environment, latency, training). Which settings make up a model's recipe is defined here, once: the
training recipe decides a model's fine-tuned WER (``calibrate`` pools only verify runs that share it);
the measurement recipe adds what changes a measurement (a verify folder resumes only under it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .artifact import Artifact

FORMAT = "predictnas-verify/1"
TRAINING_RECIPE = ("finetune_steps", "from_scratch", "peak_lr", "batch_seconds", "precision", "split", "seed")
MEASUREMENT_RECIPE = TRAINING_RECIPE + ("baselines_from_scratch", "device", "production_sample_rate", "test_data",
                                        "protocols")
# what verify runs from before a setting was recorded used
RECIPE_BEFORE = {"baselines_from_scratch": False, "precision": "fp32"}


def recipe_of(settings: dict, fields: tuple[str, ...] = MEASUREMENT_RECIPE) -> dict:
    """The recipe ``fields`` of verify ``settings``, a field recorded before it existed at its old value."""
    return {k: settings[k] if k in settings or k not in RECIPE_BEFORE else RECIPE_BEFORE[k] for k in fields}


@dataclass(frozen=True)
class Verification(Artifact):
    """The content of a verify.json; ``models`` are its per-model results, ``settings`` verify's."""

    document: dict
    FORMAT: ClassVar[str] = FORMAT
    KIND: ClassVar[str] = "verify.json"
    READS: ClassVar[tuple[str | None, ...]] = (None,)  # written before the format tag
    HINT: ClassVar[str] = " (written by `predictnas verify`)"

    @property
    def models(self) -> list[dict]:
        return self.document["models"]

    @property
    def settings(self) -> dict:
        return self.document["settings"]

    def model(self, name: str) -> dict | None:
        return next((m for m in self.models if m["name"] == name), None)

    def training_recipe(self) -> dict:
        return recipe_of(self.settings, TRAINING_RECIPE)

    def to_dict(self) -> dict:
        return {**self.document, "format": FORMAT}

    @classmethod
    def from_dict(cls, data: dict, source: str) -> "Verification":
        recipe_of(data["settings"], TRAINING_RECIPE)
        for m in data["models"]:
            m["name"], m["arch_id"], m["arch"], float(m["measured"]["wer"]["all"])
        return cls({k: v for k, v in data.items() if k != "format"})
