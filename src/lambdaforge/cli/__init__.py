"""The `lambdaforge` command line. Command modules register themselves on the shared app."""

from lambdaforge.cli import cloud_cmds, model_cmds, serve_cmds, stack_cmds  # noqa: F401  (registers commands)
from lambdaforge.cli.app import app, main

__all__ = ["app", "main"]
