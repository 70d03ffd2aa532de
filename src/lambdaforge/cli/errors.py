"""Errors the CLI raises itself: a bad command line, or a command whose outcome is a failure."""

from __future__ import annotations

from lambdaforge.errors import LambdaforgeError


class CliError(LambdaforgeError):
    """The command line or a file it names is wrong; exit code 2 with a message naming the problem."""

    exit_code = 2


class CommandFailedError(LambdaforgeError):
    """A command ran but its outcome is a failure (a failed gate, a failed job); exit code 1."""

    exit_code = 1
