"""User-facing errors.

Anything a user can cause (a malformed file, an invalid architecture, an impossible budget) raises a
``PredictnasError`` whose message is one line that names the offending input. The CLI prints it as
``error: <message>`` and exits with status 2; library callers can catch it like any exception.
"""


class PredictnasError(Exception):
    """An error caused by the user's input, reported as one line without a traceback."""


class InvalidArchitecture(PredictnasError, ValueError):
    """An architecture outside the search space; the message names the offending field."""
