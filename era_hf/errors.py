"""User-facing errors.

Every mistake a user can make (bad file, bad argument, unknown id) raises
:class:`ERAError` with a message that names the file, line, id or argument.
The CLI prints such errors as one line and exits with status 2; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations


class ERAError(ValueError):
    """A problem with the user's input, files or environment, explained in one message."""
