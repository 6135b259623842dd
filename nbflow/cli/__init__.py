"""The ``nbflow`` command line."""

from nbflow.cli.main import main

__all__ = ["main"]
