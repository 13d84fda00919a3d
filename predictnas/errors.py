"""User-facing errors.

Anything a user can cause (a malformed file, an invalid architecture, an impossible budget) raises a
``PredictnasError`` whose message is one line that names the offending input. The CLI prints it as
``error: <message>`` and exits with status 2; library callers can catch it like any exception.
"""


def one_line(error: BaseException, limit: int | None = None) -> str:
    """An exception's message on one line (whitespace collapsed, at most ``limit`` characters), or its
    type's name when it has no message: for quoting a library's error inside a ``PredictnasError``."""
    return " ".join(str(error).split())[:limit] or type(error).__name__


class PredictnasError(Exception):
    """An error caused by the user's input, reported as one line without a traceback."""


class InvalidArchitecture(PredictnasError, ValueError):
    """An architecture outside the search space; the message names the offending field."""
