"""Command-line options shared by several commands, defined once."""

from __future__ import annotations

import math
from pathlib import Path

import click

# The names of experiment.PRESETS, here so the CLI starts without importing torch (a test keeps them equal)
TRAINING_PRESETS = ("tiny", "small", "long", "refine")

class FiniteFloat(click.FloatRange):
    """A float option that refuses nan and infinity (Python's float() accepts both)."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


run_dir_option = click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path),
                              default=Path("runs/default"), show_default=True, help="The experiment's run directory.")
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
