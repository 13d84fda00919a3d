"""Retraining one model of the space for ``verify``: fine-tuned from the supernet's weights or from scratch.

:func:`trained_model` trains in a folder of the verify output (``<model>/train``), resumable through the
:class:`~predictnas.train.Trainer`'s checkpoint, and leaves ``model.pt`` and ``train.json`` there.
:func:`train_on_ray` trains several models side by side on the actors of a Ray cluster: each actor loads
the supernet once, trains each model in a temporary folder of its own and returns the weights;
the driver alone writes them into the verify output (``model.pt``, and ``train.json`` with the actor's
training time). A model whose ``model.pt`` exists is not trained again, so a killed run resumes with the
models still missing. The training of a model does not depend on where it runs.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from .data.dataset import epoch_batches
from .data.features import FeatureConfig, SpecAugment
from .executor import RayExecutor
from .experiment import load_split
from .io import read_json, write_json
from .rundir import ModelFiles, RunDir, TrainingFiles
from .space import Arch, SearchSpace, SpaceConfig
from .supernet import Subnet, load_subnet, load_supernet, save_subnet
from .train import SingleModelObjective, Trainer, TrainConfig


def trained_model(arch: Arch, supernet, config: TrainConfig, from_scratch: bool, seed: int, files: TrainingFiles,
                  progress: bool, run: RunDir | None = None) -> Subnet:
    """The fine-tuned (or from-scratch) subnet, trained into ``files`` (resumed after a kill); a user data
    set's features are cached in ``run``."""
    if files.artifact.exists():
        return load_subnet(files.artifact)
    if from_scratch:
        torch.manual_seed(seed)
        subnet = Subnet(arch, supernet.space, dropout=0.1)
    else:
        subnet = supernet.extract(arch)
    if config.steps > 0:
        train = load_split(supernet, "train", run, progress=progress)
        intents = supernet.metadata["intents"]
        trainer = Trainer(subnet, config,
                          batches=lambda epoch, g: epoch_batches(train, intents, batch_seconds=config.batch_seconds,
                                                                 shuffle=True, generator=g),
                          files=files, augment=SpecAugment().train(), objective=SingleModelObjective(),
                          data_fingerprint=arch.arch_id, save=save_subnet,
                          frames_per_second=FeatureConfig.from_dict(supernet.metadata["features"]).frames_per_second)
        trainer.fit(progress=progress)
    else:
        save_subnet(subnet, files.artifact)
    return subnet


def training_seconds(files: TrainingFiles) -> float:
    """Wall seconds the model's training took (0 without training steps): the Trainer's summary's."""
    return float(read_json(files.summary)["wall_seconds"]) if files.summary.exists() else 0.0


def train_on_ray(address: str, supernet_path: Path, jobs: list[tuple[TrainingFiles, Arch, TrainConfig, bool]],
                 seed: int, run: RunDir | None, log: Callable[[str], None] = print) -> None:
    """Train each ``(files, arch, config, from_scratch)`` of ``jobs`` without a model yet on the Ray
    cluster at ``address``; each result is written into its files as it arrives."""
    todo = [job for job in jobs if not job[0].artifact.exists()]
    if not todo:
        return
    log(f"training {len(todo)} models on the Ray cluster at {address}")
    executor = RayExecutor(address, setup=_setup_worker,
                           setup_args=(str(Path(supernet_path).resolve()), str(run.root.resolve()) if run else None))
    by_folder = {str(files.folder): files for files, *_ in todo}
    items = [(str(files.folder), arch.to_dict(), config.to_dict(), from_scratch, seed)
             for files, arch, config, from_scratch in todo]
    for item, (space, weights, summary) in executor.map_unordered(_train_job, items):
        files = by_folder[item[0]]
        config = SpaceConfig.from_dict(space)
        subnet = Subnet(SearchSpace(config).from_json(item[1]), config)
        subnet.load_state_dict(weights)
        write_json(files.summary, summary)  # before the model: a model.pt always has its summary
        save_subnet(subnet, files.artifact)
        log(f"  trained {files.folder.parent.name} in {summary['wall_seconds'] / 60:.1f} min")


# ---- worker side: the supernet and the training features, once per actor ----------------------------

_WORKER: dict = {}


def _setup_worker(supernet_path: str, run_root: str | None) -> None:
    _WORKER.update(supernet=load_supernet(supernet_path), run=RunDir(run_root) if run_root else None)


def _train_job(item: tuple) -> tuple[dict, dict, dict]:
    _, arch_dict, config_dict, from_scratch, seed = item
    supernet = _WORKER["supernet"]
    arch = SearchSpace(supernet.space).from_json(arch_dict)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="predictnas-verify-") as tmp:
        subnet = trained_model(arch, supernet, TrainConfig(**config_dict), from_scratch, seed,
                               ModelFiles(Path(tmp)).training, progress=False, run=_WORKER["run"])
    summary = {"steps": config_dict["steps"], "wall_seconds": time.perf_counter() - started, "executor": "ray"}
    return subnet.space.to_dict(), {k: v.clone() for k, v in subnet.state_dict().items()}, summary
