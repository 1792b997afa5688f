"""Where the commands write: status lines on stderr, rich tables on stdout."""

from __future__ import annotations

import os

import click
from rich.console import Console

__all__ = ["PIPE_WIDTH", "STATUS_STYLE", "console", "err"]

PIPE_WIDTH = 200
"""Width of tables written to a pipe or file (no terminal to fit): wide enough not to wrap."""

STATUS_STYLE = {
    "pending": "cyan",
    "running": "yellow",
    "completed": "green",
    "failed": "red",
    "cancelled": "dim",
}
"""The rich style of each job status in tables."""


def err(message: str) -> None:
    """Print ``message`` as one line on stderr."""
    click.echo(message, err=True)


def console() -> Console:
    """A console for tables on stdout: the terminal's width, or :data:`PIPE_WIDTH` when stdout
    is not a terminal and ``$COLUMNS`` is not set."""
    output = Console(highlight=False, soft_wrap=False)
    if not output.is_terminal and "COLUMNS" not in os.environ:
        output = Console(highlight=False, soft_wrap=False, width=PIPE_WIDTH)
    return output
