"""Ready artifacts shipped inside the package, reached by name: ``predictnas search --budget 40ms`` works
right after ``pip install``.

Layout (package data, read with :mod:`importlib.resources`)::

    manifest.json                every artifact below: SHA-256, the command that made it, seed, versions
    speech-v1/supernet.pt        the trained supernet of the default space (half-precision weights)
    speech-v1/evals.sqlite       the subnets evaluated with its weights (``sample``)
    speech-v1/predictor.json     the XGBoost predictor fitted on them (``fit``)
    speech-v1/finetune.json      the fine-tuning calibration (``calibrate``, from a ``verify``)
    lut/<device-id>.json         latency tables measured on the machine classes of the CI pool
    archs/<space>/*.json         hand-crafted baselines (uniformly scaled Conformers)

Artifacts refer to a shipped supernet as ``pretrained:<name>`` rather than by a file path, so they hold
after the package moves; :func:`resolve_supernet` turns such a reference (or a plain path) into a file.
Nothing here is ever written at run time: what the program measures goes to :mod:`predictnas.cache`.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

from ..errors import PredictnasError
from ..io import read_json
from ..rundir import RunDir

DEFAULT = "speech-v1"  # the pretrained set of the default space, named after it
REFERENCE_PREFIX = "pretrained:"
ARTIFACTS = ("supernet", "store", "predictor", "finetune")  # a pretrained set is laid out as a run directory
MANIFEST = "manifest.json"


def root() -> Path:
    """The package's data folder as a file-system path (predictnas is installed as files, not zipped)."""
    return Path(str(resources.files(__name__)))


def tables_dir() -> Path:
    return root() / "lut"


def baselines(space_name: str) -> tuple[str, ...]:
    """The hand-crafted Conformers shipped for ``space_name`` (none for a space without a folder)."""
    return tuple(str(p) for p in sorted((root() / "archs" / space_name).glob("*.json")))


def artifact(kind: str, name: str = DEFAULT) -> Path | None:
    """The shipped ``kind`` (``supernet``, ``store``, ``predictor``, ``finetune``) of pretrained set
    ``name``, or None where it is not shipped."""
    if kind not in ARTIFACTS:
        raise PredictnasError(f"unknown pretrained artifact {kind!r}; known: {', '.join(ARTIFACTS)}")
    path = getattr(RunDir(root() / name), kind)
    return path if path.is_file() else None


def reference(name: str = DEFAULT) -> str:
    """How artifacts record the shipped supernet of ``name``."""
    return REFERENCE_PREFIX + name


def resolve_supernet(where: str | Path) -> Path:
    """A supernet file from ``pretrained:<name>`` or a path."""
    text = str(where)
    if not text.startswith(REFERENCE_PREFIX):
        return Path(text)
    name = text.removeprefix(REFERENCE_PREFIX)
    path = artifact("supernet", name)
    if path is None:
        raise PredictnasError(f"{text}: this predictnas ships no supernet named {name!r}")
    return path


def manifest() -> dict:
    path = root() / MANIFEST
    return read_json(path) if path.is_file() else {"artifacts": {}}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_manifest() -> list[str]:
    """One line per shipped file whose SHA-256 differs from the manifest, or that is missing; empty when
    everything matches."""
    problems = []
    for relative, entry in manifest()["artifacts"].items():
        path = root() / relative
        if not path.is_file():
            problems.append(f"{relative}: listed in the manifest but not shipped")
        elif sha256_of(path) != entry["sha256"]:
            problems.append(f"{relative}: SHA-256 differs from the manifest")
    return problems
