"""Exit codes of the ``nbflow`` command and its one error for bad input."""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 3
"""Done; a state failed; bad input; the run was interrupted (it can be resumed)."""
EXIT_BROKEN_PIPE = 141
"""The reader of the output went away (``| head``): what a shell reports for a command
killed by SIGPIPE (128 + 13)."""


class CommandLineError(Exception):
    """Bad command-line input; printed as one line, exit code 2."""
