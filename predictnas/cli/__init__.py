"""The ``predictnas`` command line: thin click commands over the library, one module per stage.

A command parses its options, calls the library function of the same stage and prints what it returns;
options shared by several commands are defined once (:mod:`.options`). Every user error is one line on
stderr, ``error: ...``, and exit status 2.
"""

from __future__ import annotations

import sys

import click

from .. import __version__
from ..errors import PredictnasError, one_line


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PredictnasError as e:  # one line, whatever a library's message quoted in it looked like
            click.echo(f"error: {one_line(e)}", err=True)
            ctx.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="predictnas")
def main() -> None:
    """Hardware-aware neural architecture search for on-device speech recognition."""


from .latency import build_lut_command  # noqa: E402  (the commands, registered after the group exists)
from .predictor import calibrate_command, fit_command, sample_command  # noqa: E402
from .run import run_command  # noqa: E402
from .search import search_command  # noqa: E402
from .space import estimate_command, export_command, space_command  # noqa: E402
from .train import corpus_command, eval_command, train_command  # noqa: E402
from .verify import verify_command  # noqa: E402

for command in (space_command, export_command, corpus_command, train_command, eval_command, build_lut_command,
                estimate_command, sample_command, fit_command, calibrate_command, search_command, verify_command,
                run_command):
    main.add_command(command)

if __name__ == "__main__":
    sys.exit(main())
