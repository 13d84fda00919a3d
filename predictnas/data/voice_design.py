"""Designed voices: espeak-ng voice variants drawn at random, for training speakers beyond the shipped ones.

Why: the shipped variants (:data:`.synth.VARIANTS`) are about a hundred timbres, and the corpus splits them
between train, dev and test. A model trained on about 80 of them learns those timbres by heart (GPU probe,
a 6-block version of the largest subnet trained alone for 5,000 steps: train WER 0.5 % against 26 % on the
unseen dev voices). At the ``small`` preset's 2,900 CPU steps they changed nothing measurable (45.5 % dev
WER for the largest with them, 44.8 % without, on the same dev set): there the model is still learning.
A designed variant is a variant file like the shipped ones, with its pitch, vocal-tract length (all
formants scaled together), per-formant detail, voicing, roughness, flutter, breath, echo and synthesizer
(the standard one or a Klatt model) drawn from ranges that span the shipped variants. They are used in
the training split only, so dev and test voices stay unseen.

espeak-ng reads variants from ``voices/!v`` of its data folder. :func:`voice_data_dirs` makes folders that
mirror the installed data through symbolic links and hold the designed variants, a hundred per folder (see
:data:`VARIANTS_PER_DIR`), so the installed package is never written to.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

VARIANT_DIR = os.path.join("voices", "!v")
PREFIX = "designed"
# espeak-ng lists at most 349 voices (its N_VOICES_LIST): language files (141 in espeakng-loader's data)
# and variants together; past that it drops voices and the dialects fail to load.
VARIANTS_PER_DIR = 100


def designed_name(index: int) -> str:
    return f"{PREFIX}{index:04d}"


def is_designed(variant: str) -> bool:
    return variant.startswith(PREFIX)


def design_variant(name: str, rng: np.random.Generator) -> str:
    """The text of an espeak-ng variant file for one random voice (the format of ``voices/!v/*``)."""
    height = rng.uniform()
    base = 70.0 * 3.0 ** height  # Hz: low male (70) to high female (210) voices
    # Higher voices tend to come with shorter vocal tracts (higher formants), as in the shipped variants.
    tract = 0.88 + 0.30 * float(np.clip(height + rng.uniform(-0.3, 0.3), 0.0, 1.0))
    lines = ["language variant", f"name {name}", f"pitch {round(base)} {round(base * rng.uniform(1.15, 1.7))}"]
    for k in range(9):  # frequency %, height %, width %
        lines.append(f"formant {k} {round(100 * tract * rng.uniform(0.94, 1.06))} "
                     f"{round(rng.uniform(75, 130))} {round(rng.uniform(75, 150))}")
    lines += [f"voicing {round(rng.uniform(70, 150))}", f"consonants {round(rng.uniform(70, 130))}",
              f"roughness {int(rng.integers(0, 5))}", f"flutter {int(rng.integers(0, 26))}"]
    if rng.random() < 0.3:
        lines.append("breath " + " ".join(["0"] + [str(int(rng.integers(1, 5)))] * 7))
    if rng.random() < 0.3:
        lines.append(f"echo {round(rng.uniform(60, 180))} {round(rng.uniform(5, 25))}")
    if rng.random() < 0.2:
        lines.append(f"klatt {int(rng.integers(1, 7))}")
    return "\n".join(lines) + "\n"


def design_voices(count: int, rng: np.random.Generator) -> dict[str, str]:
    """``count`` designed variants, by name."""
    return {designed_name(i): design_variant(designed_name(i), rng) for i in range(count)}


def voice_data_dirs(installed: str | os.PathLike, designs: dict[str, str], folder: str | os.PathLike,
                    per_dir: int = VARIANTS_PER_DIR) -> dict[str, Path]:
    """Espeak-ng data folders under ``folder`` that hold ``designs``: the installed data linked entry by
    entry, with ``voices/!v`` holding up to ``per_dir`` designed variants (and no shipped ones). Returns
    each design's folder, by name."""
    names = list(designs)
    where = {}
    for start in range(0, len(names), per_dir):
        chunk = {name: designs[name] for name in names[start:start + per_dir]}
        data = voice_data_dir(installed, chunk, Path(folder) / str(start // per_dir))
        where.update(dict.fromkeys(chunk, data))
    return where


def voice_data_dir(installed: str | os.PathLike, designs: dict[str, str], folder: str | os.PathLike) -> Path:
    """Make ``folder`` an espeak-ng data folder: ``installed`` linked entry by entry, with only ``designs``
    in ``voices/!v``. Returns ``folder``."""
    installed, folder = Path(installed), Path(folder)
    if len(designs) > VARIANTS_PER_DIR:
        raise ValueError(f"{len(designs)} variants in one data folder: espeak-ng lists {VARIANTS_PER_DIR} at most "
                         "beside its languages; use voice_data_dirs")
    variants = folder / VARIANT_DIR
    variants.mkdir(parents=True, exist_ok=True)
    for entry in installed.iterdir():
        if entry.name != "voices":
            _link(entry, folder / entry.name)
    for entry in (installed / "voices").iterdir():
        if entry.name != "!v":
            _link(entry, folder / "voices" / entry.name)
    for name, text in designs.items():
        (variants / name).write_text(text)
    return folder


def _link(target: Path, link: Path) -> None:
    if not link.exists():
        link.symlink_to(target)
