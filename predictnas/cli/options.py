"""Command-line options shared by several commands, defined once."""

from __future__ import annotations

import math
from pathlib import Path

import click

from ..rundir import DEFAULT_RUN_DIR
from ..space import DEFAULT_SPACE, SPACES

# The names of experiment.PRESETS, here so the CLI starts without importing torch (a test keeps them equal)
TRAINING_PRESETS = ("tiny", "small", "long", "refine", "spread")


class FiniteFloat(click.FloatRange):
    """A float option that refuses nan and infinity (Python's float() accepts both)."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


def run_dir_option(default: Path | None = DEFAULT_RUN_DIR, help: str = "The experiment's run directory."):
    """``--run-dir``: the folder whose files (:class:`~predictnas.rundir.RunDir`) the command reads and writes."""
    return click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=default,
                        show_default=default is not None, help=help)


space_option = click.option("--space", "space_name", default=DEFAULT_SPACE.name, show_default=True,
                            type=click.Choice(sorted(SPACES)), help="Registered search space.")

no_progress_option = click.option("--no-progress", is_flag=True, help="No progress bars.")
ray_address_option = click.option(
    "--ray-address", default=None, metavar="ADDRESS",
    help="Run the trials on the Ray cluster at ADDRESS (auto, host:port or ray://host:port) instead of local "
         "processes; needs pip install 'predictnas[ray]', and predictnas and the run's files on every node.")


def data_options(command):
    """Your data instead of the embedded corpus: each a JSONL manifest or a LibriSpeech folder."""
    for option in reversed((
        click.option("--train-data", type=click.Path(exists=True, path_type=Path), default=None,
                     help="Your training set instead of the corpus: a JSONL manifest or a LibriSpeech folder."),
        click.option("--dev-data", type=click.Path(exists=True, path_type=Path), default=None,
                     help="Your dev set (same forms): sample and calibrate score on it."),
        click.option("--test-data", type=click.Path(exists=True, path_type=Path), default=None,
                     help="Your test set of held-out speakers (optional): verify and eval --split test score on it."),
        click.option("--resample", is_flag=True, help="Resample audio at another rate instead of refusing it."),
    )):
        command = option(command)
    return command
