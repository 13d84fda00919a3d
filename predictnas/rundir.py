"""A run's folder and every file the stages write into it, named once and passed down.

One experiment lives in one run directory (``--run-dir``, default ``runs/default``)::

    supernet.pt  train.json  train_checkpoint.pt  snapshots/   train   (TrainingFiles)
    features/                                                 cached features of a user data set
    evals.sqlite                                              sample, search --rescore, calibrate
    predictor.json                                            fit
    finetune.json                                             calibrate
    top.json  pareto.json  pareto.png                         search  (SearchFiles)
    verify/verify.json  report.md  verify.png  <model>/       verify of top.json  (VerifyFiles)
    calibrated/top.json ...  calibrated/verify/               run's second round, for the fine-tuned WER

A command that writes elsewhere (``search --out``, ``verify --out``) still reads its inputs and caches
from the run directory; nothing derives a run directory from another file's location.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_RUN_DIR = Path("runs/default")


@dataclass(frozen=True)
class TrainingFiles:
    """What a :class:`~predictnas.train.Trainer` writes into its folder: the trained artifact, the summary,
    the resumable checkpoint and the snapshots (``snapshots/step-<N>.pt``)."""

    folder: Path
    artifact_name: str = "supernet.pt"

    @property
    def artifact(self) -> Path:
        return self.folder / self.artifact_name

    @property
    def summary(self) -> Path:
        return self.folder / "train.json"

    @property
    def checkpoint(self) -> Path:
        return self.folder / "train_checkpoint.pt"

    @property
    def snapshots(self) -> Path:
        return self.folder / "snapshots"

    def snapshot(self, step: int) -> Path:
        return self.snapshots / f"step-{step:06d}.pt"


@dataclass(frozen=True)
class ModelFiles:
    """One verified model's folder: which model it belongs to, its training, its exports, its result."""

    folder: Path

    @property
    def claim(self) -> Path:
        return self.folder / "claim.json"  # the architecture and settings the folder's work belongs to

    @property
    def result(self) -> Path:
        return self.folder / "result.json"

    @property
    def training(self) -> TrainingFiles:
        return TrainingFiles(self.folder / "train", "model.pt")

    @property
    def onnx(self) -> Path:
        return self.folder / "model.onnx"

    @property
    def onnx_int8(self) -> Path:
        return self.folder / "model.int8.onnx"


@dataclass(frozen=True)
class VerifyFiles:
    """What ``verify`` writes: the report (JSON, Markdown, plot) and one folder per model."""

    folder: Path

    @property
    def report_json(self) -> Path:
        return self.folder / "verify.json"

    @property
    def report_md(self) -> Path:
        return self.folder / "report.md"

    @property
    def plot(self) -> Path:
        return self.folder / "verify.png"

    def model(self, name: str) -> ModelFiles:
        return ModelFiles(self.folder / name)


@dataclass(frozen=True)
class SearchFiles:
    """What ``search`` writes: ``top.json`` and, beside it, the front and its plot; ``verify`` of that
    top.json goes to ``verify/`` beside it unless told otherwise."""

    top: Path

    @property
    def pareto_json(self) -> Path:
        return self.top.parent / "pareto.json"

    @property
    def pareto_png(self) -> Path:
        return self.top.parent / "pareto.png"

    @property
    def verify(self) -> VerifyFiles:
        return VerifyFiles(self.top.parent / "verify")


@dataclass(frozen=True)
class RunDir:
    """Every artifact path of one run. Stages receive it (or the one file they need from it) and never
    build a path of the run themselves."""

    root: Path = DEFAULT_RUN_DIR

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def of(cls, where: "RunDir | str | Path | None") -> "RunDir":
        """``where`` as a RunDir (a RunDir is returned as it is; None is the default run directory)."""
        return where if isinstance(where, RunDir) else cls(DEFAULT_RUN_DIR if where is None else Path(where))

    @property
    def training(self) -> TrainingFiles:
        return TrainingFiles(self.root)

    @property
    def supernet(self) -> Path:
        return self.training.artifact

    @property
    def features(self) -> Path:
        return self.root / "features"

    @property
    def store(self) -> Path:
        return self.root / "evals.sqlite"

    @property
    def predictor(self) -> Path:
        return self.root / "predictor.json"

    @property
    def finetune(self) -> Path:
        return self.root / "finetune.json"

    @property
    def search(self) -> SearchFiles:
        return SearchFiles(self.root / "top.json")

    @property
    def calibrated(self) -> SearchFiles:
        """The second round of ``run``: the search for the fine-tuned WER and its verify."""
        return SearchFiles(self.root / "calibrated" / "top.json")

    def __str__(self) -> str:
        return str(self.root)
